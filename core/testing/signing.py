"""Signed deliveries: builders for the signature schemes channels commonly use. A plugin's own
tests build its channel's deliveries with these (or with its own helpers) and post them with the
``deliver`` fixture."""
from __future__ import annotations

import os
from datetime import datetime, timezone


def json_body(payload) -> bytes:
    """``payload`` as compact JSON bytes, the way most channels send it."""
    import json
    return json.dumps(payload, separators=(",", ":")).encode()


def hmac_signature(secret: str | bytes, body: bytes, *, digest: str = "sha256",
                   encoding: str = "base64") -> str:
    """HMAC of the raw body with ``secret``, as ``base64`` or ``hex`` — e.g. Shopify's
    ``X-Shopify-Hmac-Sha256`` is ``hmac_signature(client_secret, body)``."""
    import base64
    import hashlib
    import hmac
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, body, getattr(hashlib, digest)).digest()
    if encoding == "base64":
        return base64.b64encode(mac).decode()
    if encoding == "hex":
        return mac.hex()
    raise ValueError(f"encoding is 'base64' or 'hex', not {encoding!r}")


def new_standard_webhooks_secret() -> str:
    """A fresh random Standard Webhooks secret, ``whsec_<base64 of 24 bytes>``."""
    import base64
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


class StandardWebhooksSigner:
    """Signs bodies the way a Standard Webhooks sender does (the ``standardwebhooks`` library),
    producing the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers::

        signer = StandardWebhooksSigner("whsec_...")
        headers = signer.headers(body)                   # a new message id each call
        headers = signer.headers(body, msg_id="msg_1")  # a retry of msg_1
    """

    def __init__(self, secret: str):
        from standardwebhooks.webhooks import Webhook
        self.secret = secret
        self.webhook = Webhook(secret)
        self._count = 0

    def headers(self, body: bytes | str, *, msg_id: str | None = None,
                timestamp: datetime | int | float | None = None) -> dict[str, str]:
        import base64
        import hashlib
        import hmac
        if msg_id is None:
            self._count += 1
            msg_id = f"msg_{os.urandom(6).hex()}_{self._count}"
        if timestamp is None:
            timestamp = datetime.now(timezone.utc)
        elif not isinstance(timestamp, datetime):
            timestamp = datetime.fromtimestamp(timestamp, timezone.utc)
        raw = body.encode() if isinstance(body, str) else body
        try:
            signature = self.webhook.sign(msg_id=msg_id, timestamp=timestamp,
                                          data=raw.decode())
        except UnicodeDecodeError:
            # The library signs text; sign the raw bytes the same way (receivers will refuse
            # them as the library does, which is what a test of such a body wants to see).
            stamp = str(int(timestamp.timestamp())).encode()
            mac = hmac.new(self.webhook._whsecret, msg_id.encode() + b"." + stamp + b"." + raw,
                           hashlib.sha256).digest()
            signature = "v1," + base64.b64encode(mac).decode()
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp.timestamp())),
                "webhook-signature": signature}


def standard_webhooks_headers(secret: str, body: bytes | str, *, msg_id: str | None = None,
                              timestamp: datetime | int | float | None = None) -> dict[str, str]:
    """One-off :meth:`StandardWebhooksSigner.headers`."""
    return StandardWebhooksSigner(secret).headers(body, msg_id=msg_id, timestamp=timestamp)
