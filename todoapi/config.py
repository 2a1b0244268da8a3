"""Configuration: one pure function of the environment."""

from collections.abc import Mapping
from typing import Any

from limits import parse

DEV_SECRET = "dev-only-secret-change-me-in-production"  # noqa: S105 - refused in production below
MIN_SECRET_LENGTH = 32
# Published values, refused in production: whoever has read this repository knows them.
PUBLIC_SECRETS = frozenset({DEV_SECRET, "change-me-to-a-random-string-of-32-or-more-chars"})  # .env.example


class ConfigError(Exception):
    """The environment cannot run the service; the message says what to set."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    try:
        parse(raw)
    except ValueError:
        raise ConfigError(
            f"{name} must read like {default!r} (a count per second/minute/hour/day), got {raw!r}"
        ) from None
    return raw


def _bool(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


ENVIRONMENTS = ("development", "test", "production")


def load_config(env: Mapping[str, str]) -> dict[str, Any]:
    app_env = env.get("APP_ENV", "").strip().lower() or "development"
    if app_env not in ENVIRONMENTS:
        # A typo ("prod") would otherwise run with development's defaults, the public secret included.
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env['APP_ENV']!r}")
    production = app_env == "production"
    secret = env.get("JWT_SECRET_KEY", "")
    if production and (secret.strip() in PUBLIC_SECRETS or len(secret.strip()) < MIN_SECRET_LENGTH):
        raise ConfigError(
            f"JWT_SECRET_KEY must be set to a random string of at least {MIN_SECRET_LENGTH} characters "
            "when APP_ENV=production"
        )
    return {
        "APP_ENV": app_env,
        "DATABASE_URL": env.get("DATABASE_URL") or "sqlite:///todo.db",
        "REDIS_URL": env.get("REDIS_URL") or "redis://localhost:6379/0",
        "JWT_SECRET_KEY": secret or DEV_SECRET,
        "JWT_ACCESS_MINUTES": _int(env, "JWT_ACCESS_MINUTES", 60),
        "JWT_REFRESH_DAYS": _int(env, "JWT_REFRESH_DAYS", 30),
        "NOTIFY_INTERVAL_SECONDS": _int(env, "NOTIFY_INTERVAL_SECONDS", 60),
        "SMTP_URL": env.get("SMTP_URL") or None,
        "WEBHOOK_ALLOW_PRIVATE": _bool(env, "WEBHOOK_ALLOW_PRIVATE"),
        "LOGIN_RATE_LIMIT": _rate(env, "LOGIN_RATE_LIMIT", "10/minute"),
        "MAX_CONTENT_LENGTH": 1024 * 1024,  # larger bodies get 413
        # Seconds a request waits for the database before answering 503.
        "DB_TIMEOUT_SECONDS": _int(env, "DB_TIMEOUT_SECONDS", 2),
        # Proxies in front of the app that append to X-Forwarded-For (a platform's router: 1).
        # 0 trusts none: the client address is the TCP peer, which a client cannot forge.
        "TRUSTED_PROXY_HOPS": _int(env, "TRUSTED_PROXY_HOPS", 0, minimum=0),
    }
