"""Login rate limit: per (client address, email), every attempt counts, Redis-backed, fails open.

Built on `limits` (the engine under flask-limiter) directly: flask-limiter runs three hooks on every
request of the app to serve one limited endpoint, ~30 µs on each API call.
"""

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from todoapi.auth.services import normalize_email
from todoapi.errors import AppError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)
EXTENSION = "todoapi.login_limit"


class TooManyAttempts(AppError):
    code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many login attempts; try again after Retry-After seconds.")
        self.headers = {"Retry-After": str(retry_after)}


def _login_key() -> str:
    body = request.get_json(silent=True) if request.is_json else request.form
    email = ""
    if isinstance(body, dict) or hasattr(body, "get"):
        raw = body.get("email") or body.get("username") or ""  # type: ignore[union-attr]
        email = normalize_email(raw) if isinstance(raw, str) else ""
    # Hashed: the key shows up in Redis.
    return f"login:{client_network(request.remote_addr)}:{hashlib.sha256(email.encode()).hexdigest()[:16]}"


def client_network(address: str | None) -> str:
    """The client address as the limit counts it: an IPv4 address, or an IPv6 address's /64. A
    single IPv6 host is commonly handed a whole /64, so counting each address would give it 2**64
    buckets; an IPv4 address inside IPv6 (`::ffff:a.b.c.d`) counts as that IPv4 address."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _count_attempt() -> None:
    limiter, item = cast(tuple[FixedWindowRateLimiter, RateLimitItem], current_app.extensions[EXTENSION])
    key = _login_key()
    try:
        if limiter.hit(item, key):
            return
        reset_at = limiter.get_window_stats(item, key).reset_time
    except (RedisError, StorageError, OSError) as error:
        # Redis down: logins go through unlimited rather than failing; availability of sign-in
        # beats the limit for the length of an outage (README: Operations, "Login rate limit").
        log.warning("login rate limit unavailable, attempt let through: %s", type(error).__name__)
        return
    raise TooManyAttempts(retry_after=max(1, math.ceil(reset_at - time.time())))


def login_limit(view: F) -> F:
    """Counts every attempt on the view, before its body is even read; over the limit: 429."""

    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        _count_attempt()
        return view(*args, **kwargs)

    return cast(F, limited)


def _limits_uri(redis_url: str) -> str:
    # The `limits` package spells a Redis unix socket redis+unix:// (redis-py: unix://).
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def init_limits(app: Flask) -> None:
    item = parse(app.config["LOGIN_RATE_LIMIT"])  # checked by load_config
    storage = storage_from_string(
        _limits_uri(app.config["REDIS_URL"]), socket_connect_timeout=1, socket_timeout=1
    )
    app.extensions[EXTENSION] = (FixedWindowRateLimiter(storage), item)
