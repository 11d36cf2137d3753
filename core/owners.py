"""Who holds a lease, and whether they are gone.

A worker's claims (``deliveries.claimed_by``) and a sender's endpoint leases
(``webhook_endpoints.lease_owner``) are named ``[sender:]<host>:<pid>[:<n>]``. A process that
dies holding them leaves them to run out (a claim after ``ORDERHOOKS_CLAIM_SECONDS``, a lease
after the sender's lease time): right for a process on another machine, whose fate this one
cannot see. On the same machine it can: the process that ``orderhooks serve`` starts in place of
a dead one frees what the dead one held at once, instead of leaving deliveries and endpoints
waiting minutes.

Only the host name and the pid are compared: a pid reused by another process since is taken for
alive, which only leaves its leases to run out, as before.
"""
from __future__ import annotations

import os
import socket


def name(*parts: object) -> str:
    """An owner name for this process: ``<host>:<pid>`` and ``parts``."""
    return ":".join([socket.gethostname(), str(os.getpid()), *map(str, parts)])


def dead_here(owner: str | None, prefix: str = "") -> bool:
    """Whether ``owner`` (a name from :func:`name`, after ``prefix``) is a process of this host
    that no longer runs. False for another host's, this process's, or a name not of that form."""
    if not owner or not owner.startswith(prefix):
        return False
    host, _, rest = owner[len(prefix):].partition(":")
    pid = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it runs
        return False
    return False
