"""The intake's channel cache (core/channel_cache.py ``ChannelCache``): an expired entry is reloaded by
one thread while the others go on with the value it replaces, and an admin edit (``clear``)
wins over a load that began before it."""
from __future__ import annotations

import threading
import time

import pytest

from core.channel_cache import ChannelCache


def test_a_fresh_entry_is_not_loaded_again():
    cache, calls = ChannelCache(ttl=60), []
    assert cache.get(1, lambda: calls.append(1) or "v1") == "v1"
    assert cache.get(1, lambda: calls.append(2) or "v2") == "v1"
    assert calls == [1]


def test_an_expired_entry_is_reloaded_by_one_thread_while_others_use_the_old_value():
    cache = ChannelCache(ttl=0.01)
    cache.get(1, lambda: "old")
    time.sleep(0.02)
    loading, finish, loads = threading.Event(), threading.Event(), []

    def slow_load():
        loads.append(1)
        loading.set()
        assert finish.wait(10)
        return "new"

    answers = {}
    refresher = threading.Thread(target=lambda: answers.setdefault("r", cache.get(1, slow_load)))
    refresher.start()
    assert loading.wait(10)
    # Meanwhile every other thread gets the entry it replaces, without a query of its own.
    others = [cache.get(1, lambda: loads.append(2) or "herd") for _ in range(5)]
    assert others == ["old"] * 5 and loads == [1]
    finish.set()
    refresher.join(10)
    assert answers["r"] == "new"
    cache.ttl = 60
    assert cache.get(1, lambda: "unused") == "new"


def test_a_failed_reload_reaches_its_thread_and_the_next_one_tries_again():
    cache = ChannelCache(ttl=0.01)
    cache.get(1, lambda: "old")
    time.sleep(0.02)

    def failing():
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        cache.get(1, failing)
    assert cache.get(1, lambda: "back") == "back"


def test_clear_during_a_load_keeps_the_loaded_value_out():
    """An admin edit clears the cache while a load that read the row before the edit is in
    flight: that value answers its own request but is not kept for the next ones."""
    cache = ChannelCache(ttl=60)

    def load_then_edit():
        cache.clear()  # the edit lands while this load is running
        return "before the edit"

    assert cache.get(1, load_then_edit) == "before the edit"
    assert cache.get(1, lambda: "after the edit") == "after the edit"


def test_no_such_channel_is_cached_too():
    """"No such channel" (None) is an answer like any other, kept for ``ttl`` (a sender
    retrying against a deleted channel does not query the database each time)."""
    cache = ChannelCache(ttl=60)
    assert cache.get(7, lambda: None) is None
    assert cache.get(7, lambda: "created since") is None
