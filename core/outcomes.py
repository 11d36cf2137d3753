"""The words of a stored delivery's life: where it is in the inbox (:class:`DeliveryState`) and,
once processed, what came of it (:class:`Outcome`).

They are ``StrEnum`` members: each is equal to, stored as and serialised as its plain word
(``"pending"``, ``"applied"``...), the word the admin API and the database use."""
from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    #: Waiting to be processed, or to be retried (then its outcome says why: ``failed``).
    PENDING = "pending"
    #: Claimed by a worker, until ``claimed_until``.
    PROCESSING = "processing"
    #: Finished: its outcome is final (until a replay).
    DONE = "done"


class Outcome(StrEnum):
    #: The intents changed the order (or the channel).
    APPLIED = "applied"
    #: Nothing to change, and the reason why (a status rule, a stale event, a topic not acted on).
    IGNORED = "ignored"
    #: Held until the order is processed or imported (a bounded window).
    DEFERRED = "deferred"
    #: The last attempt failed; the delivery is retried with backoff.
    FAILED = "failed"
    #: Every attempt failed: no more retries (a replay starts again).
    DEAD = "dead"
