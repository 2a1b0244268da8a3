"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""

from dotenv import load_dotenv

from todoapi import create_app
from todoapi.config import ConfigError

load_dotenv()  # real environment variables win over .env

try:
    app = create_app()
except ConfigError as exc:
    raise SystemExit(f"todoapi: configuration error: {exc}") from None
