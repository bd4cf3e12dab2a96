"""A fixed-window request counter in the cache (Redis in production)."""
import time

from django.core.cache import cache


def over_limit(key, limit, window=60):
    """Count one hit; return seconds until the window resets if `limit` is exceeded, else None."""
    if not limit:
        return None
    now = time.time()
    window_start = int(now // window) * window
    cache_key = f"throttle:{key}:{window_start}"
    cache.add(cache_key, 0, timeout=window + 5)
    try:
        hits = cache.incr(cache_key)
    except ValueError:  # evicted between add and incr
        cache.set(cache_key, 1, timeout=window + 5)
        hits = 1
    if hits > limit:
        return max(1, int(window_start + window - now) + 1)
    return None
