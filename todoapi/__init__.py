"""todoapi: a multi-user TODO REST service."""

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from todoapi.api import init_api
from todoapi.auth.limits import init_limits
from todoapi.auth.tokens import init_auth
from todoapi.cli import init_cli
from todoapi.config import load_config
from todoapi.db import init_db
from todoapi.errors import init_errors
from todoapi.ops.logs import init_request_logging, init_security_headers
from todoapi.ops.metrics import init_metrics
from todoapi.ops.routes import init_docs_assets
from todoapi.queue import init_redis


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(load_config(os.environ), **(overrides or {}))
    init_request_logging(app)
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
    return app
