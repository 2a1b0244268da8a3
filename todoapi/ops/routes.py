from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Flask, Response, make_response, send_from_directory
from flask.views import MethodView
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST
from swagger_ui_bundle import swagger_ui_path

from todoapi.api import Blueprint
from todoapi.ops import checks
from todoapi.ops.metrics import render_metrics

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness.")
metrics_blp = Blueprint("metrics", __name__, url_prefix="/metrics", description="Prometheus metrics.")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "healthy"})


class DbHealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    db = fields.String(required=True, metadata={"example": "connected"})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


@blp.route("")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, str]:
        """Liveness: the process answers; touches nothing else."""
        return {"status": "healthy"}


@blp.route("/db")
class HealthDb(MethodView):
    @blp.response(200, DbHealthSchema)
    @blp.alt_response(503, schema=DbHealthSchema, description="The database is unreachable.")
    def get(self) -> tuple[dict[str, str], int]:
        """Database reachability (answers within about 2 s)."""
        problem = checks.database_problem()
        if problem:
            return {"status": "error", "db": problem}, 503
        return {"status": "ok", "db": "connected"}, 200


@blp.route("/ready")
class HealthReady(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="A dependency is down; `checks` names it.")
    def get(self) -> tuple[dict[str, Any], int]:
        """Readiness: the database answers with its schema migrated, and Redis answers."""
        results = {
            "db": checks.database_problem(schema=True) or "ok",
            "redis": checks.redis_problem() or "ok",
        }
        healthy = all(value == "ok" for value in results.values())
        return {"status": "ok" if healthy else "error", "checks": results}, 200 if healthy else 503


@metrics_blp.route("")
class Metrics(MethodView):
    @metrics_blp.response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text format.")
    def get(self) -> Response:
        """Request counts and latency, queue depth, notifications (all web and worker processes)."""
        return render_metrics()


STATIC = Path(__file__).resolve().parent / "static"
# Redoc's standalone bundle, byte for byte as npm publishes it (scripts/fetch-redoc writes it and
# its VERSION): no Python package ships it without Django.
REDOC_ASSETS = STATIC / "redoc"
# Both docs pages run, load and fetch only what our origin serves: a pasted token sits in Swagger
# UI's localStorage. Both UIs style through <style> elements they write; Redoc's search runs in a
# worker made from a blob; Redoc's bundle always shows Redocly's logo from cdn.redoc.ly, which this
# blocks (the logo then hides itself).
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PAGES = ("api-docs.openapi_swagger_ui", "api-docs.openapi_redoc")


def init_docs_assets(app: Flask) -> None:
    """Serve Swagger UI's files (the swagger-ui-bundle package) and Redoc's bundle from the app, so
    /docs and /redoc work offline, and give both pages a policy that keeps them to our origin."""
    app.add_url_rule("/docs/assets/<path:filename>", "swagger_asset", _files_in(swagger_ui_path))
    app.add_url_rule(
        "/docs/init.js", "swagger_init", _files_in(STATIC / "swagger"), defaults={"filename": "init.js"}
    )
    app.add_url_rule("/redoc/assets/<path:filename>", "redoc_asset", _files_in(REDOC_ASSETS))
    for endpoint in DOCS_PAGES:
        app.view_functions[endpoint] = _within_our_origin(app.view_functions[endpoint])


def _files_in(directory: str | Path) -> Callable[[str], Response]:
    """A view serving the files of `directory`, cached by browsers for a day."""

    def view(filename: str) -> Response:
        return send_from_directory(directory, filename, max_age=86_400)

    return view


def _within_our_origin(page: Callable[[], Any]) -> Callable[[], Response]:
    @wraps(page)
    def view() -> Response:
        response = make_response(page())
        response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response

    return view
