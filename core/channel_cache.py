"""Sales channels by id, kept a few seconds for the webhook edge, which looks one up on every
delivery; bounded, because the ids come from unauthenticated URLs."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

_UNLOADED = object()
#: Channel ids up to this many above the highest one are looked up (see ChannelCache).
MIN_REACH = 1024


class ChannelCache:
    """Channels by id for a few seconds, so the webhook edge does not read the channel row every time.
    Admin edits in this process clear it; other processes see them within ``ttl`` seconds.

    When an entry expires, one thread reloads it while the others go on with the value it
    replaces (stale by the few milliseconds of that query): the threads of a busy process must
    not all query the database at the same moment, past the pool's size, each time an entry
    expires.

    Ids come from unauthenticated URLs, so what they can cost is bounded:

    * at most ``size`` channels and, apart, at most ``missing_size`` "no such channel" answers,
      each table dropping its least recently used entry first: ids made up by a stranger never
      push a real channel out;
    * an id beyond the reach of the highest channel id (twice it, and at least 1,024 more; the
      highest is read at most once every ``ceiling_interval`` seconds — 1, or ``ttl`` if
      shorter) is no channel, answered without a query and without an entry. The margin lets
      channels created in other processes since be found at once. An id within reach that
      names no channel costs one primary-key read, at most once per ``ttl`` while its answer
      stays among the ``missing_size`` kept."""

    def __init__(self, ttl: float = 5.0, size: int = 4096, missing_size: int = 1024,
                 ceiling_interval: float | None = None):
        self.ttl = ttl
        self.size, self.missing_size = size, missing_size
        self.ceiling_interval = min(1.0, ttl) if ceiling_interval is None else ceiling_interval
        self._entries: OrderedDict[int, tuple[float, object]] = OrderedDict()
        self._missing: OrderedDict[int, tuple[float, None]] = OrderedDict()
        self._lock = threading.Lock()
        self._refreshing: set[int] = set()
        self._generation = 0  # clear() bumps it: a load that began before is not kept
        self._reach = MIN_REACH
        self._ceiling_due = float("-inf")  # when the highest id may be read again
        self._ceiling_loading = False

    def __len__(self) -> int:
        return len(self._entries) + len(self._missing)

    def get(self, channel_id: int, load, highest=None):
        """The channel ``channel_id`` (None when there is none), from ``load()`` when it is
        not cached; with ``highest`` (a function returning the highest channel id), ids beyond
        its reach are None without calling ``load``."""
        now = time.monotonic()
        entry = self._entries.get(channel_id) or self._missing.get(channel_id)
        if entry is not None and entry[0] > now:
            try:
                (self._missing if entry[1] is None else self._entries).move_to_end(channel_id)
            except KeyError:  # dropped by another thread meanwhile
                pass
            return entry[1]
        if entry is None and highest is not None and channel_id > self._reach \
                and not self._within_reach(highest, now, channel_id):
            return None
        with self._lock:
            if entry is not None and channel_id in self._refreshing:
                return entry[1]  # another thread is reloading it
            self._refreshing.add(channel_id)
            generation = self._generation
        value = _UNLOADED
        try:
            value = load()
            return value
        finally:
            with self._lock:
                self._refreshing.discard(channel_id)
                if value is not _UNLOADED and generation == self._generation:
                    keep, other, bound = ((self._missing, self._entries, self.missing_size)
                                          if value is None else
                                          (self._entries, self._missing, self.size))
                    other.pop(channel_id, None)
                    keep[channel_id] = (now + self.ttl, value)
                    keep.move_to_end(channel_id)
                    while len(keep) > bound:
                        keep.popitem(last=False)

    def _within_reach(self, highest, now: float, channel_id: int) -> bool:
        """Whether ``channel_id`` is within reach of the highest channel id, reading that id
        again if it is due (one thread at a time; the others keep the reach it replaces)."""
        with self._lock:
            if self._ceiling_loading or now < self._ceiling_due:
                return channel_id <= self._reach
            self._ceiling_loading = True
            generation = self._generation
        reach = None
        try:
            ceiling = int(highest() or 0)
            reach = ceiling + max(MIN_REACH, ceiling)
        finally:
            with self._lock:
                self._ceiling_loading = False
                if reach is not None:
                    self._reach = reach
                    if generation == self._generation:
                        self._ceiling_due = now + self.ceiling_interval
        return channel_id <= self._reach

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._missing.clear()
            self._generation += 1
            self._ceiling_due = float("-inf")
