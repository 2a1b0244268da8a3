from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validates_schema
from marshmallow.validate import Email, Equal, Length

from todoapi.fields import Text, Timezone, TrimmedStr

# Passwords are taken exactly as typed: never trimmed, 8-128 characters.
PASSWORD = Length(8, 128)


class UserRegisterSchema(Schema):
    email = TrimmedStr(required=True, validate=[Length(3, 320), Email()])
    password = Text(required=True, load_only=True, validate=PASSWORD)


class UserLoginSchema(Schema):
    """JSON `{email, password}` or the OAuth2 password form (`username`, `password`)."""

    email = Text(validate=Length(max=320))
    username = Text(load_only=True, validate=Length(max=320))
    password = Text(required=True, load_only=True, validate=Length(max=1024))
    # Sent by OAuth2 clients such as the docs page's Authorize dialog; not used.
    grant_type = Text(load_only=True, validate=Equal("password"))
    scope = Text(load_only=True)
    client_id = Text(load_only=True)
    client_secret = Text(load_only=True)

    @validates_schema
    def _one_identity(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("email") and not data.get("username"):
            raise ValidationError("Missing data for required field.", "email")

    @post_load
    def _email(self, data: dict[str, Any], **kwargs: Any) -> dict[str, str]:
        return {"email": data.get("email") or data["username"], "password": data["password"]}


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Access-token lifetime in seconds."})


class UserCreatedSchema(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.String(dump_only=True)
    timezone = fields.String(dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)


class UserSchema(UserCreatedSchema):
    webhook_url = fields.String(dump_only=True, allow_none=True)


class UserUpdatedSchema(UserSchema):
    webhook_secret = fields.String(
        dump_only=True,
        attribute="new_webhook_secret",
        metadata={
            "description": "Only when this request set a new webhook_url: the signing secret, shown once."
        },
    )


class UserUpdateSchema(Schema):
    timezone = Timezone(metadata={"example": "Europe/Berlin"})
    webhook_url = Text(
        allow_none=True,
        validate=Length(max=2000),
        metadata={"description": "https URL for signed due-soon events; null removes it."},
    )
    current_password = Text(load_only=True, validate=Length(max=1024))
    new_password = Text(load_only=True, validate=PASSWORD)

    @validates_schema
    def _password_pair(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "new_password" in data and "current_password" not in data:
            raise ValidationError("Required to change the password.", "current_password")
        if "current_password" in data and "new_password" not in data:
            raise ValidationError("Required with current_password.", "new_password")
