"""JWTs: issuing, verifying, and one 401 shape for every way a token can fail."""

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

import jwt as pyjwt
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, get_jti
from flask_jwt_extended.exceptions import (
    InvalidHeaderError,
    NoAuthorizationError,
    RevokedTokenError,
    WrongTokenError,
)
from werkzeug.exceptions import HTTPException

from todoapi.api import BEARER, Blueprint, error_doc
from todoapi.auth import services
from todoapi.errors import AppError, Unauthorized, error_body
from todoapi.models import User, utcnow

F = TypeVar("F", bound=Callable[..., Any])


def _unauthorized(message: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    return error_body(401, message), 401, dict(Unauthorized.headers)


class _RememberingJWTManager(JWTManager):
    """flask-jwt-extended's manager, remembering the tokens it has verified.

    Verifying decodes a token three times (claims, header, then verified), and PyJWT checks base64
    one character at a time: ~80 µs per request. Once a token has passed, its signature, `nbf` and
    `iat` checks give the same answer forever; only `exp` moves. So a verified token's claims and
    header are kept (per process, bounded) under its exact text, and `exp` is checked again on every
    use. Revocation is not cached: the session check runs on every request.
    """

    REMEMBERED = 4096

    def __init__(self, app: Flask) -> None:
        self._verified: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        super().__init__(app)

    def verified(self, encoded_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The claims and header of a valid token; the library's exceptions for any other."""
        remembered = self._verified.get(encoded_token)
        if remembered is not None:
            claims, header = remembered
            exp = claims.get("exp")
            leeway = current_app.config["JWT_DECODE_LEEWAY"]
            if exp is None or int(exp) > time.time() - leeway:
                return dict(claims), header
            self._verified.pop(encoded_token, None)  # expired: the library raises its own error below
        claims = self._decode_jwt_from_config(encoded_token)
        header = pyjwt.get_unverified_header(encoded_token)
        with self._lock:
            if len(self._verified) >= self.REMEMBERED:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[encoded_token] = (dict(claims), header)
        return claims, header


_FIELDS = re.compile(r",\s*")


def _bearer_token() -> str:
    """The JWT in `Authorization: Bearer <JWT>`, read as flask-jwt-extended reads it, except that the
    scheme is case-insensitive (RFC 7235; we hand out token_type "bearer")."""
    value = request.environ.get("HTTP_AUTHORIZATION", "").strip().strip(",")
    if not value:
        raise NoAuthorizationError("Missing Authorization Header")
    fields = [field for field in _FIELDS.split(value) if field and field.split()[0].lower() == "bearer"]
    if len(fields) != 1:
        raise NoAuthorizationError("Missing 'Bearer' type in 'Authorization' header.")
    parts = fields[0].split()
    if len(parts) != 2:
        raise InvalidHeaderError("Bad Authorization header. Expected 'Authorization: Bearer <JWT>'")
    return parts[1]


def _verify(refresh: bool) -> None:
    """What flask-jwt-extended's `jwt_required` checks of the token itself, for our one token
    location: signature, expiry, type. No query; see `_check_session` for the rest.

    Raises the library's exceptions, so its error handlers (and our loaders below) answer."""
    manager = cast(_RememberingJWTManager, current_app.extensions["flask-jwt-extended"])
    claims, header = manager.verified(_bearer_token())
    kind = "refresh" if refresh else "access"
    if claims.get("type") != kind:
        raise WrongTokenError(f"Only {kind} tokens are allowed")
    if "exp" not in claims:  # every token we issue expires; PyJWT checks `exp` only when present
        raise pyjwt.MissingRequiredClaimError("exp")
    if refresh and not isinstance(claims.get("jti"), str):
        raise WrongTokenError("A refresh token names its jti")
    # caller_id: set once a query saw the session live (the request log shows it too).
    g.token_claims, g.token_header, g.token_user, g.caller_id = claims, header, None, None


def _check_session() -> User:
    """The caller's account, from one query answering both "is the session live" and "who is this"
    (a deleted user's sessions are gone too); the library's 401 when it is not."""
    if g.token_user is None:
        claims = g.token_claims
        refresh_jti = claims["jti"] if claims.get("type") == "refresh" else None
        user = services.session_user(claims.get("sid"), claims.get("sub"), refresh_jti)
        if user is None:
            raise RevokedTokenError(g.token_header, claims)
        g.token_user, g.caller_id = user, user.id
    return cast(User, g.token_user)


def init_auth(app: Flask) -> None:
    app.config.update(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=app.config["JWT_ACCESS_MINUTES"]),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=app.config["JWT_REFRESH_DAYS"]),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # never `none`, never an algorithm the token picks
    )
    jwt = _RememberingJWTManager(app)

    services.configure_hasher(**app.config.get("ARGON2_PARAMETERS", {}))

    jwt.unauthorized_loader(lambda reason: _unauthorized("Missing or malformed Authorization header."))
    jwt.invalid_token_loader(lambda reason: _unauthorized("Invalid token."))
    jwt.expired_token_loader(lambda header, payload: _unauthorized("Token has expired."))
    jwt.revoked_token_loader(lambda header, payload: _unauthorized("Token has been revoked."))


def issue_tokens(user: User, session_id: str) -> tuple[dict[str, Any], str, datetime]:
    """Tokens for one session, and the refresh token's jti and expiry (no earlier than its `exp`)
    to record on it."""
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
    return body, str(get_jti(refresh)), utcnow() + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]


UNAUTHORIZED_DOC = {"401": error_doc("Missing, invalid, expired or revoked token.")}


def _documented(view: Callable[..., Any]) -> Any:
    return Blueprint.doc(security=BEARER, responses=UNAUTHORIZED_DOC)(view)


def _requires_token(refresh: bool) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            _verify(refresh)
            _check_session()
            return view(*args, **kwargs)

        return cast(F, _documented(checked))

    return decorate


# The token check plus its OpenAPI security marker and 401, so docs and behaviour cannot drift.
login_required = _requires_token(refresh=False)
refresh_required = _requires_token(refresh=True)


def login_required_in_query(view: F) -> F:
    """`login_required` for a view whose first query checks the session itself (see `Claim`): one
    round trip fewer. A view that writes must write only after that query found its rows.

    Whatever the view does, the answer is the same as `login_required`'s: when the view's query did
    not see the session live (nothing found, a 4xx, or a view that never asked), the ordinary session
    check runs before anything is sent, and a dead session gets its 401."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _verify(refresh=False)
        try:
            response = view(*args, **kwargs)
        except (HTTPException, AppError):  # 401 wins over invalid input, 404, 304 and the rest
            _require_live_session()
            raise
        _require_live_session()
        return response

    return cast(F, _documented(checked))


def _require_live_session() -> None:
    if g.caller_id is None:
        _check_session()


class Claim:
    """Who a verified access token says is calling, before any query has checked its session.

    A read that selects only rows of `user_id`, and only while the session `session_id` of that user
    exists, answers for the session check: if it finds anything, it calls `seen()`."""

    __slots__ = ("session_id", "user_id")

    def __init__(self, user_id: int, session_id: str) -> None:
        self.user_id, self.session_id = user_id, session_id

    def seen(self) -> None:
        g.caller_id = self.user_id

    def account(self) -> User:
        """The account, after the ordinary session check (the 401 when the session is gone)."""
        return _check_session()


def claim() -> Claim:
    claims = g.token_claims
    key = services.session_key(claims.get("sid"), claims.get("sub"))
    if key is None:
        raise RevokedTokenError(g.token_header, claims)  # names no session: none can be live
    session_id, user_id = key
    return Claim(user_id, session_id)


def caller() -> User:
    return _check_session()


def token_claims() -> dict[str, Any]:
    _check_session()
    return cast(dict[str, Any], g.token_claims)
