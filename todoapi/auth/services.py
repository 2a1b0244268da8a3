"""Accounts and sessions: the rules, with no Flask in sight."""

import re
import secrets
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from peewee import IntegrityError, fn

from todoapi.db import db, dialect, for_update, sql_for, write_transaction
from todoapi.errors import Conflict, Forbidden, Unauthorized, Unprocessable
from todoapi.models import MAX_ID, Session, Todo, User, utcnow
from todoapi.notifications.channels import UnsafeTarget, check_webhook_url, new_webhook_secret

# argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile); a change of
# parameters rehashes each password at its owner's next login.
hasher = PasswordHasher()


def configure_hasher(**parameters: Any) -> None:
    """Replace the argon2id parameters (the test suite uses cheaper ones; the environment cannot)."""
    global hasher
    hasher = PasswordHasher(**parameters)
    _decoy_hash.cache_clear()
    # Made now, not at the first unknown email: that login would otherwise take two hashes' time
    # (gunicorn preloads the app, so its workers inherit this one).
    _decoy_hash()


# Issues a session's tokens: session id -> (response body, refresh token jti).
TokenIssuer = Callable[[str], tuple[dict[str, Any], str, datetime]]

BAD_CREDENTIALS = "Incorrect email or password."


def normalize_email(email: str) -> str:
    return email.strip().lower()


def register_user(email: str, password: str) -> User:
    password_hash = hasher.hash(password)  # before the transaction: SQLite writers take turns
    try:
        with db.atomic():
            return User.create(email=normalize_email(email), password_hash=password_hash)
    except IntegrityError:
        raise Conflict("An account with this email already exists.") from None


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return hasher.hash(secrets.token_urlsafe(16))


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(email: str, password: str) -> User:
    """The user with these credentials; unknown email and wrong password look the same."""
    user = User.select().where(fn.LOWER(User.email) == normalize_email(email)).first()
    if user is None:
        _password_matches(_decoy_hash(), password)  # spend the same time as a real check
        raise Unauthorized(BAD_CREDENTIALS)
    if not _password_matches(user.password_hash, password):
        raise Unauthorized(BAD_CREDENTIALS)
    if hasher.check_needs_rehash(user.password_hash):
        rehashed = hasher.hash(password)
        # Compare-and-set: a password changed meanwhile stays changed (and this login then fails).
        if _replace_password_hash(user, rehashed):
            user.password_hash = rehashed
    return user


def _replace_password_hash(user: User, new_hash: str) -> bool:
    """Set the account's password hash if it is still `user.password_hash` (the one checked)."""
    query = User.update(password_hash=new_hash).where(
        (User.id == user.id) & (User.password_hash == user.password_hash)
    )
    return bool(query.execute())


def open_session(user: User, issue: TokenIssuer) -> dict[str, Any]:
    """A new session, if the password just checked (`user.password_hash`) is still the account's.

    A password change ends every session; a login whose check ran before the change committed must
    not add one after it. The insert reads the account's row with a share lock (PostgreSQL), so it
    waits for a change under way (which locks the row first, then deletes the sessions) and then
    sees its new hash; SQLite runs one write at a time."""
    session_id = secrets.token_hex(16)
    tokens, refresh_jti, expires_at = issue(session_id)
    row = {
        Session.id: session_id,
        Session.refresh_jti: refresh_jti,
        Session.created_at: utcnow(),
        Session.expires_at: expires_at,
    }
    # Each value as its column stores it (the times as naive UTC); the account's id from its row.
    values = [field.to_value(value) for field, value in row.items()]
    account = User.select(User.id, *values).where(
        (User.id == user.id) & (User.password_hash == user.password_hash)
    )
    fields = [Session.user, *row]
    if not Session.insert_from(for_update(account, "SHARE"), fields).as_rowcount().execute():
        raise Unauthorized(BAD_CREDENTIALS)
    return tokens


def rotate_session(session_id: str, refresh_jti: str, issue: TokenIssuer) -> dict[str, Any]:
    """New tokens for a live session; the presented refresh token stops working."""
    tokens, new_jti, expires_at = issue(session_id)
    # Compare-and-set: of two concurrent refreshes with one token, exactly one wins.
    rotated = (
        Session.update(refresh_jti=new_jti, expires_at=expires_at)
        .where((Session.id == session_id) & (Session.refresh_jti == refresh_jti))
        .execute()
    )
    if not rotated:
        raise Unauthorized("Refresh token has already been used.")
    return tokens


def end_session(session_id: str) -> None:
    Session.delete().where(Session.id == session_id).execute()


def _session_user_query(session_id: str, user_id: int, refresh_jti: str | None) -> Any:
    query = User.select().join(Session).where((Session.id == session_id) & (Session.user == user_id))
    if refresh_jti is not None:
        query = query.where(Session.refresh_jti == refresh_jti)
    return query  # sessions.id is the key: one row at most


@lru_cache(maxsize=8)
def _session_user_sql(dialect: str, by_refresh: bool) -> str:
    # Every authenticated request runs this query: its SQL is built once per dialect, not per call.
    jti = "jti" if by_refresh else None
    query = _session_user_query("session", -1, jti)
    return sql_for(query, "session", -1, *([jti] if by_refresh else []))


# What `open_session` and flask-jwt-extended write. A signed token is still checked against them:
# a value no row can hold would otherwise reach the database as an error rather than a miss.
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_USER_ID = re.compile(r"[1-9][0-9]{0,9}")
_JTI = re.compile(r"[\x21-\x7e]{1,64}")


def session_key(session_id: Any, user_id: Any) -> tuple[str, int] | None:
    """A token's `sid` and `sub` as a session key, or None when they cannot name one."""
    if not isinstance(session_id, str) or not isinstance(user_id, str):
        return None
    if not _SESSION_ID.fullmatch(session_id) or not _USER_ID.fullmatch(user_id) or int(user_id) > MAX_ID:
        return None
    return session_id, int(user_id)


def session_user(session_id: Any, user_id: Any, refresh_jti: str | None = None) -> User | None:
    """The owner of a live session, or None when the session or the user is gone."""
    key = session_key(session_id, user_id)
    if key is None or (refresh_jti is not None and not _JTI.fullmatch(refresh_jti)):
        return None
    params = [*key] if refresh_jti is None else [*key, refresh_jti]
    sql = _session_user_sql(dialect(), refresh_jti is not None)
    row = db.execute_sql(sql, params).fetchone()
    return None if row is None else User.from_row(row)


def _set_webhook(user: User, url: str | None, allow_private: bool) -> None:
    if url is None:
        user.webhook_url = user.webhook_secret = None
        return
    try:
        check_webhook_url(url, allow_private)
    except UnsafeTarget as exc:
        raise Unprocessable(
            "The webhook URL is not allowed.", {"json": {"webhook_url": [str(exc)]}}
        ) from None
    user.webhook_url, user.webhook_secret = url, new_webhook_secret()
    # Shown once, in this response only (UserUpdatedSchema.webhook_secret reads it).
    user.new_webhook_secret = user.webhook_secret  # type: ignore[attr-defined]


def update_user(user: User, changes: dict[str, Any], allow_private_webhooks: bool = False) -> User:
    """Writes only the columns that change: the caller's row was read at the start of the request,
    and writing it all back would undo what committed since (a password change, the revision)."""
    new_password = changes.pop("new_password", None)
    current_password = changes.pop("current_password", None)
    if "webhook_url" in changes:
        _set_webhook(user, changes.pop("webhook_url"), allow_private_webhooks)
        changes |= {"webhook_url": user.webhook_url, "webhook_secret": user.webhook_secret}
    if new_password is not None:
        # Both argon2 runs before the transaction: SQLite's writers take turns (db.WriterQueue).
        if not _password_matches(user.password_hash, current_password or ""):
            raise Forbidden("The current password is wrong.")
        new_hash = hasher.hash(new_password)
    with write_transaction():
        if new_password is not None:
            # Compare-and-set on the hash checked above, and the account's row locked before the
            # sessions go: a concurrent login either came first (its session is deleted here) or
            # waits and sees the new hash (`open_session`).
            if not _replace_password_hash(user, new_hash):
                raise Forbidden("The current password is wrong.")
            user.password_hash = new_hash
            # A new password ends every session, this one included.
            Session.delete().where(Session.user == user.id).execute()
        if changes:
            User.update(**changes).where(User.id == user.id).execute()
    for name, value in changes.items():
        setattr(user, name, value)
    return user


def delete_user(user: User) -> None:
    # Tags, sessions and notifications go with it (ON DELETE CASCADE). The todos go first, on their
    # own: a change takes its todo's row, then its account's (the revision bump), and a deletion that
    # took them the other way round (the account's cascade) could deadlock with it.
    with write_transaction():
        Todo.delete().where(Todo.user == user.id).execute()
        User.delete().where(User.id == user.id).execute()
