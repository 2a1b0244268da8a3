"""Login rate limit: per (client address, email), every attempt counts, Redis-backed, fails open."""

import hashlib

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from todoapi.auth.services import normalize_email


def _login_key() -> str:
    body = request.get_json(silent=True) if request.is_json else request.form
    email = ""
    if isinstance(body, dict) or hasattr(body, "get"):
        raw = body.get("email") or body.get("username") or ""  # type: ignore[union-attr]
        email = normalize_email(raw) if isinstance(raw, str) else ""
    # Hashed: the key shows up in Redis and in flask-limiter's log lines.
    return f"login:{get_remote_address()}:{hashlib.sha256(email.encode()).hexdigest()[:16]}"


limiter = Limiter(key_func=get_remote_address, default_limits=[])
login_limit = limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT"],
    key_func=_login_key,
    error_message="Too many login attempts; try again after Retry-After seconds.",
)


def _limits_uri(redis_url: str) -> str:
    # The `limits` package spells a Redis unix socket redis+unix:// (redis-py: unix://).
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def init_limits(app: Flask) -> None:
    app.config.update(
        RATELIMIT_STORAGE_URI=_limits_uri(app.config["REDIS_URL"]),
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 1, "socket_timeout": 1},
        RATELIMIT_STRATEGY="fixed-window",
        RATELIMIT_HEADERS_ENABLED=True,
        # If Redis is down, logins go through unlimited rather than failing: availability of
        # sign-in beats the limit for the length of an outage (README: "Abuse limits").
        RATELIMIT_SWALLOW_ERRORS=True,
    )

    # Registered before the limiter's own hook, so it runs after it (Flask runs them in reverse).
    @app.after_request
    def _only_429_says_retry(response: Response) -> Response:
        # Counters differ per (address, email); showing them on every login answer would make
        # "unknown email" and "wrong password" responses distinguishable.
        if request.endpoint == "auth.Login" and response.status_code != 429:
            for name in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                response.headers.pop(name, None)
        return response

    limiter.init_app(app)


@limiter.request_filter
def _only_login_is_limited() -> bool:
    # Exempts every other request up front, so that they skip the limiter's per-request lookup
    # of which limits apply (tens of microseconds on every API call).
    return request.endpoint != "auth.Login"
