from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validates_schema
from marshmallow.validate import Equal, Length

from todoapi.fields import HTTP_URL, FullMatch, Mailbox, Text, Timezone, TrimmedStr

# Passwords are taken exactly as typed: never trimmed, 8-128 characters.
PASSWORD = Length(8, 128)


class UserRegisterSchema(Schema):
    email = TrimmedStr(required=True, validate=Mailbox(), metadata={"format": "email"})
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

    @validates_schema(skip_on_field_errors=False)  # reported with a missing password, not after it
    def _one_identity(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("email") and not data.get("username"):
            raise ValidationError("Missing data for required field (email, or username in a form).", "email")

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
        validate=[Length(max=2000), FullMatch(HTTP_URL, error="Must be an absolute http(s) URL.")],
        metadata={
            "format": "uri",
            "description": "https URL for signed due-soon events; null removes it. Plain http, and hosts "
            "on private, loopback or link-local addresses, are refused (422) unless the server allows them.",
        },
    )
    # Each optional on its own, as the OpenAPI document (3.0: no dependentRequired) can say it: a
    # new_password without the right current_password is 403; current_password alone changes nothing.
    current_password = Text(
        load_only=True,
        validate=Length(max=1024),
        metadata={"description": "Required, and checked, with new_password (wrong or missing: 403)."},
    )
    new_password = Text(load_only=True, validate=PASSWORD)
