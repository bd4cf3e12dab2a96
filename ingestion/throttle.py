"""A fixed-window request counter in the cache (Redis in production)."""
import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)


def over_limit(key, limit, window=60):
    """Count one hit; return seconds until the window resets if `limit` is exceeded, else None."""
    if not limit:
        return None
    now = time.time()
    window_start = int(now // window) * window
    cache_key = f"throttle:{key}:{window_start}"
    try:
        cache.add(cache_key, 0, timeout=window + 5)
        try:
            hits = cache.incr(cache_key)
        except ValueError:  # evicted between add and incr
            cache.set(cache_key, 1, timeout=window + 5)
            hits = 1
    except Exception as exc:  # noqa: BLE001 - the cache (Redis) is down
        # Fail open: an authenticated event must not be refused because the counter is away.
        log.warning("rate limit for %s not checked, cache unavailable: %s", key, exc)
        return None
    if hits > limit:
        return max(1, int(window_start + window - now) + 1)
    return None
