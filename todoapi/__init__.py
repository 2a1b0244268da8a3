"""todoapi: a multi-user TODO REST service."""

import logging
import os
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.middleware.proxy_fix import ProxyFix

from todoapi.api import init_api
from todoapi.auth.limits import init_limits
from todoapi.auth.tokens import init_auth
from todoapi.cli import init_cli
from todoapi.config import DEV_SECRET, load_config
from todoapi.db import init_db
from todoapi.errors import init_errors
from todoapi.ops.logs import init_request_logging, init_security_headers
from todoapi.ops.metrics import init_metrics
from todoapi.ops.routes import init_docs_assets
from todoapi.queue import init_redis


class Values(ImmutableMultiDict[str, str]):
    """A request's query (and form) values. werkzeug's `get` raises and catches an exception object
    for every absent name, and webargs asks for each of a list's ten parameters on every request."""

    def get(self, key: str, default: Any = None, type: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default, type) if key in self else default


class AppRequest(Request):
    parameter_storage_class = Values


class App(Flask):
    """Flask, less two costs it pays on every request: exceptions for absent query values and
    `inspect` on every hook and view."""

    request_class = AppRequest

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks `inspect` whether every hook and view is a coroutine function, a dozen times
        # per request; a function's answer never changes. (Weak: a request may bring its own.)
        plain = getattr(func, "__func__", func)
        if plain in self._plain:
            return func
        wrapped = super().ensure_sync(func)
        if wrapped is func:
            self._plain.add(plain)
        return wrapped


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    app = App(__name__)
    app.config.from_mapping(load_config(os.environ), **(overrides or {}))
    init_request_logging(app)
    if app.config["JWT_SECRET_KEY"] == DEV_SECRET:
        logging.getLogger("todoapi").warning(
            "JWT_SECRET_KEY is not set: tokens are signed with the public development key; "
            "set it, and APP_ENV=production, anywhere but a developer's machine"
        )
    init_security_headers(app)
    init_metrics(app)
    init_db(app)
    init_redis(app)
    init_errors(app)
    init_auth(app)
    init_limits(app)
    init_api(app)
    init_docs_assets(app)
    init_cli(app)
    if app.config["TRUSTED_PROXY_HOPS"]:
        # The login limit keys on the client address: behind a router every client would otherwise
        # share the router's. Only the last N X-Forwarded-For entries are believed, so a client
        # cannot pick its own address by sending the header.
        hops = app.config["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
