"""The decision cache: bounded, least recently used out first, entries expire."""

from __future__ import annotations

from nailong_bot.cache import TTLCache, content_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_is_evicted() -> None:
    cache: TTLCache[int] = TTLCache(max_entries=2, ttl=60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_entries_expire() -> None:
    clock = Clock()
    cache: TTLCache[int] = TTLCache(max_entries=10, ttl=60, clock=clock)
    cache.put("a", 1)
    clock.now = 59
    assert cache.get("a") == 1
    clock.now = 61
    assert cache.get("a") is None and len(cache) == 0


def test_size_zero_disables_the_cache() -> None:
    cache: TTLCache[int] = TTLCache(max_entries=0, ttl=60)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_content_key_is_the_sha256() -> None:
    assert content_key(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_value_computed_across_a_clear_is_not_stored() -> None:
    cache: TTLCache[int] = TTLCache(max_entries=10, ttl=60)
    before = cache.generation
    cache.clear()  # e.g. an admin's correction lands while the value was being computed
    cache.put("a", 1, before)
    assert cache.get("a") is None
    cache.put("a", 2, cache.generation)
    assert cache.get("a") == 2
