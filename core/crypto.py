"""Encryption at rest of channel credentials and webhook secrets (Fernet, from cryptography).

Keys are Fernet keys (32 random bytes, url-safe base64: 44 characters), never derived from a
passphrase. ``ORDERHOOKS_SECRET_KEY`` holds one or more, comma-separated: the first encrypts,
every one decrypts (``orderhooks secrets rotate`` re-encrypts with the first).

Without ``ORDERHOOKS_SECRET_KEY`` (see :func:`secret_keys`): on SQLite the key is a file in the
instance folder, generated on first start; on any other database start-up fails.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import stat
import tempfile

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .config import ConfigError

log = logging.getLogger("orderhooks.crypto")

#: The key file's name in the instance folder (SQLite only).
KEY_FILE = "secret.key"
GENERATE_KEY_HINT = "generate one with `orderhooks secrets generate-key`"
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class WrongKey(ValueError):
    """A stored secret does not open with any configured key."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


def key_from_passphrase(passphrase: str) -> str:
    """The key an earlier version derived from a passphrase (one SHA-256): only to open what
    that version stored, listed after a new key until ``orderhooks secrets rotate`` has run."""
    return base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest()).decode()


def is_key(text: str) -> bool:
    """A Fernet key: 32 bytes in url-safe base64, nothing else."""
    if not _FERNET_KEY.fullmatch(text):
        return False
    try:
        return len(base64.urlsafe_b64decode(text)) == 32
    except (binascii.Error, ValueError):
        return False


def parse_keys(raw: str) -> list[str]:
    """The comma-separated keys of ``raw``; a :class:`ConfigError` (never echoing a key) for
    anything that is not a Fernet key."""
    keys = [k.strip() for k in (raw or "").split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"ORDERHOOKS_SECRET_KEY holds no key; {GENERATE_KEY_HINT}")
    for position, key in enumerate(keys, 1):
        if not is_key(key):
            which = f"key {position} of {len(keys)}" if len(keys) > 1 else "the key"
            raise ConfigError(
                f"ORDERHOOKS_SECRET_KEY: {which} is not a Fernet key (44 characters of url-safe base64 "
                f"holding 32 random bytes); {GENERATE_KEY_HINT}")
    return keys


def instance_key(folder: str) -> str:
    """The key in ``folder``/secret.key, created (owner-only) if there is none. A key file is
    never overwritten: when several processes start at once, the first to link its file wins
    and the others read that one."""
    path = os.path.join(folder, KEY_FILE)
    if not os.path.exists(path):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        # mkstemp creates the file 0600; linking it into place fails if a key file exists.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".secret-key-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(generate_key() + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
            log.warning("config.secret_key_generated", extra={
                "path": path,
                "detail": "ORDERHOOKS_SECRET_KEY is not set: channel credentials are encrypted "
                          "with the key generated in this file; back it up with the database "
                          "(without it they cannot be read)"})
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning("config.secret_key_file_not_private", extra={
            "path": path, "mode": oct(mode), "detail": "chmod 600 it: it holds the key"})
    with open(path) as f:
        key = f.read().strip()
    if not is_key(key):
        raise ConfigError(f"{path} is not a Fernet key: restore it from a backup (it opens the "
                          f"stored credentials) or set ORDERHOOKS_SECRET_KEY")
    return key


def secret_keys(configured: str, *, sqlite: bool, instance_path: str) -> str:
    """The keys to use: ``ORDERHOOKS_SECRET_KEY`` if set; else, on SQLite, the instance
    folder's key file. Any other database is refused without a key of its own: its web and
    worker processes may run on several machines, and a key generated on each would not open
    what the others stored."""
    if (configured or "").strip():
        return ",".join(parse_keys(configured))
    if not sqlite:
        raise ConfigError("ORDERHOOKS_SECRET_KEY is not set: a PostgreSQL deployment needs a "
                          f"key of its own, shared by every process; {GENERATE_KEY_HINT}")
    return instance_key(instance_path)


class Box:
    def __init__(self, secret_keys: str):
        self._fernet = MultiFernet([Fernet(k) for k in parse_keys(secret_keys)])

    def seal(self, value) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open(self, token: str):
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise WrongKey(_WRONG_KEY) from exc

    def rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise WrongKey(_WRONG_KEY) from exc


_WRONG_KEY = ("cannot decrypt: ORDERHOOKS_SECRET_KEY does not hold the key these secrets were "
              "encrypted with (when rotating, list the old key after the new: new,old)")
