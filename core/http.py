"""A requests session for channel APIs: base URL, timeouts, connection reuse, metrics."""
from __future__ import annotations

import requests

from . import metrics
from .errors import ChannelAPIError


class ChannelHTTP:
    """Thin wrapper over ``requests.Session``; plugins add their channel's auth and throttling."""

    def __init__(self, channel_type: str, base_url: str, headers: dict, timeout: float = 10.0):
        self.channel_type = channel_type
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json",
                                     "User-Agent": "orderhooks/0.1", **headers})
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            metrics.api_call(self.channel_type, "error")
            raise ChannelAPIError(f"{method} {path}: {type(exc).__name__}") from exc
        metrics.api_call(self.channel_type, response.status_code)
        return response
