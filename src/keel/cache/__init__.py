"""Cache-aside with single flight (`Cache`) and the fail-open Redis client it shares with the
rate limiter (`FailOpenRedis`). See docs/resilience.md."""

from keel.cache.cache import Cache
from keel.cache.failopen import FailOpenRedis, RedisUnavailable, create_fast_redis_pool

__all__ = ["Cache", "FailOpenRedis", "RedisUnavailable", "create_fast_redis_pool"]
