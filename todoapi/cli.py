"""Operator commands: `flask --app wsgi <command>`."""

import click
from flask import Flask

from todoapi import db as database
from todoapi.auth import services as accounts
from todoapi.auth.schemas import UserRegisterSchema
from todoapi.errors import AppError


def init_cli(app: Flask) -> None:
    @app.cli.command("migrate")
    def migrate_command() -> None:
        """Apply pending schema migrations (safe to run again)."""
        applied = database.migrate(database.db.obj)
        click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")

    @app.cli.command("create-user")
    @click.argument("email")
    @click.password_option()
    def create_user_command(email: str, password: str) -> None:
        """Create an account."""
        errors = UserRegisterSchema().validate({"email": email, "password": password})
        if errors:
            raise click.ClickException(str(errors))
        try:
            user = accounts.register_user(email, password)
        except AppError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"created user {user.id} <{user.email}>")
