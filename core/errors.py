"""Exceptions plugins raise to tell the core what went wrong, and how to react."""
from __future__ import annotations

import time


class AuthenticationError(Exception):
    """The delivery is not from the channel: the intake answers 401 and stores nothing."""


class InvalidDelivery(Exception):
    """The delivery is authentic but cannot be understood: the intake answers 400."""


class RetryLater(Exception):
    """The channel asked us to slow down (rate limit). The delivery is retried after ``delay``
    seconds without counting an attempt: being throttled is never a failure."""

    def __init__(self, reason: str, delay: float = 30.0):
        super().__init__(reason)
        self.reason = reason
        self.delay = max(0.0, float(delay))
        #: When it was raised: the delay counts from then, not from when the worker records it
        #: (a batch's other reads may take a while meanwhile).
        self.raised_at = time.monotonic()

    def remaining(self) -> float:
        """What is left of the delay now."""
        return max(0.0, self.delay - (time.monotonic() - self.raised_at))


class ChannelAPIError(Exception):
    """The channel's API failed (5xx, timeout, unexpected answer). The delivery is retried with
    exponential backoff and becomes dead after the configured number of attempts."""


class SubscriptionError(Exception):
    """A webhook subscription could not be created, changed or removed on the channel."""
