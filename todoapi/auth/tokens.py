"""JWTs: issuing, verifying, and one 401 shape for every way a token can fail."""

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    current_user,
    get_jti,
    get_jwt,
    jwt_required,
)

from todoapi.api import BEARER, Blueprint, error_doc
from todoapi.auth import services
from todoapi.errors import Unauthorized, error_body
from todoapi.models import User

F = TypeVar("F", bound=Callable[..., Any])


def _unauthorized(message: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    return error_body(401, message), 401, dict(Unauthorized.headers)


class _RememberingJWTManager(JWTManager):
    """flask-jwt-extended, remembering the tokens it has verified.

    It decodes a token three times on every request (claims, header, then verified), and PyJWT
    checks base64 one character at a time: ~80 µs per request. Once a token has passed, its
    signature, `nbf` and `iat` checks give the same answer forever; only `exp` moves. So a verified
    token's claims are kept (per process, bounded) under its exact text, and `exp` is checked again
    on every use. Revocation is not cached: the session check runs on every request.
    """

    REMEMBERED = 4096

    def __init__(self, app: Flask) -> None:
        self._verified: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._lock = threading.Lock()
        super().__init__(app)

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: str | None = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        key = (encoded_token, csrf_value)
        claims = self._verified.get(key)
        if claims is not None:
            exp = claims.get("exp")
            leeway = current_app.config["JWT_DECODE_LEEWAY"]
            if allow_expired or exp is None or int(exp) > time.time() - leeway:
                return dict(claims)
            self._verified.pop(key, None)  # expired: the library raises its own error below
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if not allow_expired:
            with self._lock:
                if len(self._verified) >= self.REMEMBERED:
                    del self._verified[next(iter(self._verified))]  # the oldest
                self._verified[key] = dict(claims)
        return claims


def init_auth(app: Flask) -> None:
    app.config.update(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=app.config["JWT_ACCESS_MINUTES"]),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=app.config["JWT_REFRESH_DAYS"]),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # never `none`, never an algorithm the token picks
    )
    jwt = _RememberingJWTManager(app)

    @app.before_request
    def _canonical_bearer_scheme() -> None:
        # RFC 7235: the auth scheme is case-insensitive (we hand out token_type "bearer");
        # flask-jwt-extended compares it case-sensitively.
        header = request.environ.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() == "bearer " and not header.startswith("Bearer "):
            request.environ["HTTP_AUTHORIZATION"] = "Bearer " + header[7:]

    services.configure_hasher(**app.config.get("ARGON2_PARAMETERS", {}))

    jwt.unauthorized_loader(lambda reason: _unauthorized("Missing or malformed Authorization header."))
    jwt.invalid_token_loader(lambda reason: _unauthorized("Invalid token."))
    jwt.expired_token_loader(lambda header, payload: _unauthorized("Token has expired."))
    jwt.revoked_token_loader(lambda header, payload: _unauthorized("Token has been revoked."))
    jwt.user_lookup_error_loader(lambda header, payload: _unauthorized("Unknown user."))
    jwt.token_verification_failed_loader(lambda header, payload: _unauthorized("Token rejected."))
    jwt.needs_fresh_token_loader(lambda header, payload: _unauthorized("Fresh token required."))

    @jwt.token_in_blocklist_loader
    def _is_revoked(header: dict[str, Any], payload: dict[str, Any]) -> bool:
        # One query answers both "is the session live" and "who is this", so the
        # user lookup below costs nothing; a deleted user's sessions are gone too.
        refresh_jti = payload["jti"] if payload.get("type") == "refresh" else None
        user = services.session_user(payload.get("sid"), payload.get("sub"), refresh_jti)
        g.token_user = user
        return user is None

    @jwt.user_lookup_loader
    def _load_user(header: dict[str, Any], payload: dict[str, Any]) -> User | None:
        return g.get("token_user")


def issue_tokens(user: User, session_id: str) -> tuple[dict[str, Any], str]:
    """Tokens for one session, and the refresh token's jti to record on it."""
    claims = {"sid": session_id}
    access = create_access_token(identity=str(user.id), additional_claims=claims)
    refresh = create_refresh_token(identity=str(user.id), additional_claims=claims)
    expires = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    body = {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": int(expires.total_seconds()),
    }
    return body, str(get_jti(refresh))


UNAUTHORIZED_DOC = {"401": error_doc("Missing, invalid, expired or revoked token.")}


def login_required(view: F) -> F:
    """jwt_required() plus its OpenAPI security marker and 401, so docs and behaviour cannot drift."""
    return cast(F, Blueprint.doc(security=BEARER, responses=UNAUTHORIZED_DOC)(jwt_required()(view)))


def refresh_required(view: F) -> F:
    """Like login_required, for the refresh token."""
    documented = Blueprint.doc(security=BEARER, responses=UNAUTHORIZED_DOC)
    return cast(F, documented(jwt_required(refresh=True)(view)))


def caller() -> User:
    return cast(User, current_user)


def token_claims() -> dict[str, Any]:
    return get_jwt()
