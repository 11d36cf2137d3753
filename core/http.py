"""Calls to channel APIs: a requests session per client, and where credentials may be sent.

Rules kept for every channel, here rather than in each plugin:

* a call goes only to the channel's own API (https, as its adapter names it) or to a base URL
  the operator allows with ``ORDERHOOKS_ALLOWED_API_BASE_URLS`` (a stand-in, a sandbox); the
  access token rides on every call, so a base URL decides who receives it;
* a base URL carries no user name or password, query or fragment (they would be stored and
  shown, or change where paths land);
* redirects are never followed: requests would resend our headers to the new location, so a
  3xx is an error;
* an error names the method, path and status, never the answer's body: what a channel's server
  says must not come back through our API.
"""
from __future__ import annotations

from typing import Iterable
from urllib.parse import quote, urlsplit

import requests

from . import metrics
from .errors import ChannelAPIError

ALLOWANCE = "ORDERHOOKS_ALLOWED_API_BASE_URLS"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def segment(value) -> str:
    """One path segment, encoded: whatever it holds, it cannot leave its place in the path."""
    return quote(str(value), safe="")


def _split(url: str) -> tuple[str, str, int, tuple[str, ...]]:
    """(scheme, host, port, path segments) of a base URL; ValueError, never repeating the URL
    (it may hold a password), for anything but a plain http(s) URL."""
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("is not a URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not contain a user name or password")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("must not contain a query or a fragment")
    segments = tuple(s for s in parts.path.split("/") if s)
    if any(s in (".", "..") or "%" in s for s in segments):
        raise ValueError("must not contain '.', '..' or encoded characters in its path")
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], segments


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for messages (never a password, path or query)."""
    try:
        scheme, host, port, _ = _split(url)
    except ValueError:
        return "(an unusable URL)"
    return f"{scheme}://{host}" + ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")


class APIBaseURLs:
    """Which base URLs a channel's API calls may use: the channel's own (https only, named by its
    adapter) and the prefixes the operator allows. An allowed entry is a URL prefix
    (``http://127.0.0.1:8001``, ``https://sandbox.example.com/api``) or a bare host (read as
    ``https://host``); it matches on scheme, host, port and whole path segments, so http is
    possible only where an http entry is listed. A port of ``*`` (``http://127.0.0.1:*``) matches
    any port of that host: stand-ins started on a free port."""

    def __init__(self, allowed: str | Iterable[str] = ()):
        items = allowed.split(",") if isinstance(allowed, str) else allowed
        self.allowed = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            url = item if "://" in item else f"https://{item}"
            any_port = ":*" in url.split("://", 1)[1].split("/", 1)[0]
            try:
                scheme, host, port, path = _split(url.replace(":*", "", 1) if any_port else url)
                self.allowed.append((scheme, host, None if any_port else port, path))
            except ValueError as exc:
                raise ValueError(f"{ALLOWANCE}: an entry {exc}") from None

    def check(self, url: str, own: Iterable[str] = ()) -> str:
        """``url`` without its trailing slash when calls may go there; ValueError otherwise, with
        a message for the operator that repeats nothing of the URL but its origin."""
        target = _split(url)
        prefixes = [p for p in (_split(o) for o in own) if p[0] == "https"] + self.allowed
        for scheme, host, port, path in prefixes:
            if (target[:2] == (scheme, host) and port in (None, target[2])
                    and target[3][:len(path)] == path):
                return url.rstrip("/")
        own_text = ", ".join(own) or "none"
        raise ValueError(f"{origin(url)} is not the channel's own API ({own_text}); to use "
                         f"another (a stand-in or sandbox), list it in {ALLOWANCE}")


class ChannelHTTP:
    """Thin wrapper over ``requests.Session``; plugins add their channel's auth and throttling.

    ``own`` names the channel's real API base URLs and ``allowed`` the operator's allowance
    (:attr:`core.adapters.ChannelAdapter.allowed_api_base_urls`): a base URL outside both raises
    ChannelAPIError here, before any header is sent."""

    def __init__(self, channel_type: str, base_url: str, headers: dict, timeout: float = 10.0,
                 *, own: Iterable[str] = (), allowed: APIBaseURLs | None = None):
        self.channel_type = channel_type
        try:
            self.base_url = (allowed or APIBaseURLs()).check(base_url, own)
        except ValueError as exc:
            raise ChannelAPIError(f"not calling the {channel_type} API: its base URL {exc}") \
                from None
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json",
                                     "User-Agent": "orderhooks/0.1", **headers})
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """``path`` is relative to the base URL (its variable parts encoded with
        :func:`segment`)."""
        if not path.startswith("/"):
            raise ValueError("a channel API path starts with '/'")
        try:
            response = self.session.request(method, f"{self.base_url}{path}",
                                            timeout=self.timeout, allow_redirects=False,
                                            **kwargs)
        except requests.RequestException as exc:
            metrics.api_call(self.channel_type, "error")
            raise ChannelAPIError(f"{method} {path}: {type(exc).__name__}") from exc
        metrics.api_call(self.channel_type, response.status_code)
        if 300 <= response.status_code < 400:
            response.close()
            raise ChannelAPIError(f"{method} {path} answered HTTP {response.status_code}, a "
                                  "redirect: not followed, so the credentials go nowhere else")
        return response
