"""Encryption at rest of channel credentials and webhook secrets (Fernet, from cryptography).

Keys come from ``ORDERHOOKS_SECRET_KEY`` (any string; comma-separated for rotation: the first key
encrypts, every key decrypts; ``orderhooks secrets rotate`` re-encrypts with the first).
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger("orderhooks.crypto")

#: Used only when no key is configured (development); a warning says so at start-up.
DEVELOPMENT_KEY = "orderhooks-development-key-do-not-use-in-production"


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


class Box:
    def __init__(self, secret_keys: str):
        keys = [k.strip() for k in (secret_keys or "").split(",") if k.strip()]
        if not keys:
            keys = [DEVELOPMENT_KEY]
        self.using_development_key = keys == [DEVELOPMENT_KEY]
        self._fernet = MultiFernet([_fernet(k) for k in keys])

    def seal(self, value) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open(self, token: str):
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: ORDERHOOKS_SECRET_KEY does not hold the key these "
                             "secrets were encrypted with") from exc

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()
