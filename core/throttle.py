"""Fixed-window counters in the shared cache (Redis in production).

Every operation fails open: with the cache away it logs, counts nothing and blocks no one —
an authenticated event or a correct password must not be refused because a counter is gone.
"""
import logging
import math
import time

from django.core.cache import cache

log = logging.getLogger(__name__)


class FixedWindow:
    """Hits per key within windows of `seconds`, named by `prefix`."""

    def __init__(self, prefix: str, seconds: int) -> None:
        self.prefix, self.seconds = prefix, seconds

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}:{int(time.time() // self.seconds)}"

    def seconds_left(self) -> int:
        """Seconds until the current window ends (at least 1)."""
        return max(1, math.ceil(self.seconds - time.time() % self.seconds))

    def hit(self, key: str) -> int | None:
        """Count one hit; the count so far in this window, or None if the cache is away."""
        cache_key = self._key(key)
        try:
            cache.add(cache_key, 0, timeout=self.seconds + 5)
            try:
                return cache.incr(cache_key)
            except ValueError:  # evicted between add and incr
                cache.set(cache_key, 1, timeout=self.seconds + 5)
                return 1
        except Exception as exc:  # noqa: BLE001 - the cache (Redis) is down
            log.warning("%s for %s not counted, cache unavailable: %s", self.prefix, key, exc)
            return None

    def count(self, key: str) -> int:
        """Hits so far in this window (0 if the cache is away)."""
        try:
            return cache.get(self._key(key), 0)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s for %s not checked, cache unavailable: %s", self.prefix, key, exc)
            return 0

    def reset(self, key: str) -> None:
        """Forget the key's hits in this window."""
        try:
            cache.delete(self._key(key))
        except Exception as exc:  # noqa: BLE001
            log.warning("%s for %s not reset, cache unavailable: %s", self.prefix, key, exc)


def over_limit(key: str, limit: int, window: int = 60) -> int | None:
    """Count one hit; return seconds until the window resets if `limit` is exceeded, else None."""
    if not limit:
        return None
    counter = FixedWindow("throttle", window)
    hits = counter.hit(key)
    if hits is not None and hits > limit:
        return counter.seconds_left()
    return None
