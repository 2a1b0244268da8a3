from typing import Any

from flask import Response, current_app
from flask.views import MethodView

from todoapi.api import Blueprint, ErrorSchema
from todoapi.auth import services
from todoapi.auth.limits import login_limit
from todoapi.auth.schemas import (
    TokenSchema,
    UserCreatedSchema,
    UserLoginSchema,
    UserRegisterSchema,
    UserSchema,
    UserUpdatedSchema,
    UserUpdateSchema,
)
from todoapi.auth.tokens import caller, issue_tokens, login_required, refresh_required, token_claims
from todoapi.models import User

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Accounts and sessions.")
me_blp = Blueprint("me", __name__, url_prefix="/me", description="The caller's account.")


@blp.route("/register")
class Register(MethodView):
    @blp.arguments(UserRegisterSchema)
    @blp.response(201, UserCreatedSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="An account with this email exists.")
    def post(self, data: dict[str, str]) -> User:
        """Create an account."""
        return services.register_user(data["email"], data["password"])


@blp.route("/login")
class Login(MethodView):
    @login_limit
    @blp.alt_response(429, schema=ErrorSchema, description="Too many attempts; see Retry-After.")
    @blp.arguments(UserLoginSchema, location="json_or_form")
    @blp.doc(requestBody={"content": {"application/x-www-form-urlencoded": {"schema": UserLoginSchema}}})
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, schema=ErrorSchema, description="Incorrect email or password.")
    def post(self, data: dict[str, str]) -> dict[str, Any]:
        """Log in with email and password (JSON, or the OAuth2 password form)."""
        user = services.authenticate(data["email"], data["password"])
        return services.open_session(user, lambda sid: issue_tokens(user, sid))


@blp.route("/refresh")
class Refresh(MethodView):
    @refresh_required
    @blp.response(200, TokenSchema)
    def post(self) -> dict[str, Any]:
        """Exchange a refresh token for new tokens; the old refresh token stops working."""
        claims, user = token_claims(), caller()
        return services.rotate_session(claims["sid"], claims["jti"], lambda sid: issue_tokens(user, sid))


@blp.route("/logout")
class Logout(MethodView):
    @login_required
    @blp.response(204)
    def post(self) -> None:
        """End this session: its access and refresh tokens stop working."""
        services.end_session(token_claims()["sid"])


@me_blp.route("")
class Me(MethodView):
    @login_required
    @me_blp.response(200, UserSchema)
    def get(self) -> User:
        """Get the caller's account."""
        return caller()

    @login_required
    @me_blp.arguments(UserUpdateSchema, required=False)
    @me_blp.response(200, UserUpdatedSchema)
    @me_blp.alt_response(403, schema=ErrorSchema, description="The current password is wrong.")
    def patch(self, data: dict[str, Any]) -> User:
        """Change the time zone, the webhook URL, or the password (which ends every session)."""
        return services.update_user(caller(), data, current_app.config["WEBHOOK_ALLOW_PRIVATE"])

    @login_required
    @me_blp.response(204)
    def delete(self) -> Response | None:
        """Delete the account with all its todos."""
        services.delete_user(caller())
        return None
