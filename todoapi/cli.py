"""Operator commands: `flask --app wsgi <command>`."""

import json

import click
from flask import Flask

from todoapi import db as database
from todoapi.auth import services as accounts
from todoapi.auth.schemas import UserRegisterSchema
from todoapi.errors import AppError
from todoapi.notifications import jobs
from todoapi.notifications import services as notifications
from todoapi.ops import seed


def init_cli(app: Flask) -> None:
    @app.cli.command("seed")
    @click.option("--users", type=click.IntRange(1), required=True, help="Accounts to create.")
    @click.option("--todos", type=click.IntRange(0), required=True, help="Todos per account.")
    @click.option(
        "--heavy-todos", type=click.IntRange(0), default=0, help="Todos of the first account instead."
    )
    @click.option("--password", default="benchmark-password", show_default=True)
    @click.option("--prefix", default="seed", show_default=True, help="Emails are <prefix><n>@example.com.")
    def seed_command(users: int, todos: int, heavy_todos: int, password: str, prefix: str) -> None:
        """Create demo accounts and todos in bulk (for benchmarks)."""
        with database.db.connection_context():
            created = seed.seed(users, todos, password, heavy_todos=heavy_todos, prefix=prefix)
        click.echo(f"created {created['users']} users and {created['todos']} todos")

    @app.cli.command("notify-due")
    @click.option("--dry-run", is_flag=True, help="Print what would be sent; change nothing.")
    def notify_due_command(dry_run: bool) -> None:
        """Run the due-soon scan once (the worker runs it every NOTIFY_INTERVAL_SECONDS)."""
        if dry_run:
            with database.db.connection_context():
                report = notifications.scan_due_soon(email=bool(app.config["SMTP_URL"]), dry_run=True)
            for entry in report.notified:
                click.echo(json.dumps(entry))
            click.echo(f"would notify {len(report.notified)} todo(s)")
            return
        result = jobs.scan_due_soon()
        click.echo(f"notified {result['notified']} todo(s); re-queued {result['requeued']} delivery(ies)")

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
