"""The REST layer: smorest's Api and Blueprint, made to speak our error shape."""

import io
import weakref
from collections.abc import Callable
from typing import Any, NoReturn, cast
from urllib.parse import urlencode

import flask_smorest
import flask_smorest.etag
import orjson
from flask import Flask, Request, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import abort
from flask_smorest.error_handler import ErrorSchema
from marshmallow import Schema, ValidationError
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from webargs.multidictproxy import MultiDictProxy
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from todoapi.errors import error_body

__all__ = ["BEARER", "LINK_HEADER", "Api", "Blueprint", "ErrorSchema", "error_doc", "init_api", "page_links"]

FORM_MIMETYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}

# Both schemes are accepted everywhere: paste a token (bearerAuth) or log in from the
# docs page's Authorize dialog with the OAuth2 password flow against /auth/login.
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "oauth2Password": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/auth/login", "scopes": {}}}},
}
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"oauth2Password": []}]


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response in our error shape (smorest registers the schema as `Error`)."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


LINK_HEADER = {
    "Link": {"description": 'RFC 8288 `rel="next"` / `rel="prev"` pages.', "schema": {"type": "string"}}
}


def page_links(skip: int, limit: int, total: int) -> str:
    """`Link` header for the neighbouring pages, keeping every other query parameter. From past the
    end, `prev` is the last page (not `limit` items before the request's `skip`: more empty pages)."""
    links = []
    prev = max(min(skip - limit, total - limit), 0) if skip > 0 else None
    for rel, target in (("prev", prev), ("next", skip + limit)):
        if target is None or (rel == "next" and target >= total):
            continue
        args = [
            (name, value) for name, value in request.args.items(multi=True) if name not in {"skip", "limit"}
        ]
        query = urlencode([*args, ("skip", target), ("limit", limit)])
        links.append(f'<{request.path}?{query}>; rel="{rel}"')
    return ", ".join(links)


MESSAGES = {
    400: "The request could not be understood.",
    422: "The request failed validation.",
    500: "Internal server error.",
}


_REPEATABLE: "weakref.WeakKeyDictionary[Schema, frozenset[str]]" = weakref.WeakKeyDictionary()
_KNOWN: "weakref.WeakKeyDictionary[Schema, frozenset[str]]" = weakref.WeakKeyDictionary()
MAX_UNKNOWN_LISTED = 20  # unknown fields a 422 names, at most


class Parser(FlaskParser):
    """webargs' parser, strict about bodies (a non-JSON body is 415, not silently empty), with a
    cheaper query-string loader."""

    def _raw_load_json(self, req: Request) -> Any:
        data = req.get_data(cache=True)
        if not is_json_request(req):
            if data:
                abort(415, message="Send the request body as application/json.")
            return core.missing
        if not data:
            return core.missing
        try:
            return current_app.json.loads(data)  # JSONProvider: strict RFC 8259
        except orjson.JSONDecodeError as error:
            # Not re-raised: webargs takes a JSONDecodeError with an empty `doc` for "no body", and
            # orjson leaves `doc` empty for bytes that are not UTF-8.
            return self._handle_invalid_json_error(error, req)

    def _handle_invalid_json_error(self, error: Exception, req: Request, *args: Any, **kwargs: Any) -> Any:
        abort(400, message="Malformed JSON body.", messages={"json": {"_schema": ["Invalid JSON body."]}})

    def load_querystring(self, req: Request, schema: Schema) -> Any:
        """The query as a plain dict, repeatable parameters (a List field's) as lists, others their
        first value: what webargs' MultiDictProxy answers, looked up at dict speed. The proxy works
        out the repeatable names and answers each field's lookup in Python on every request: ~7 µs
        of a list request's load, a fifth of it."""
        repeatable = self._repeatable_names(schema)
        args = req.args
        return {name: args.getlist(name) if name in repeatable else value for name, value in args.items()}

    def _repeatable_names(self, schema: Schema) -> frozenset[str]:
        """The names `schema` takes as lists, by webargs' own rule, worked out once per schema
        instance (`Blueprint.arguments` keeps one per view)."""
        names = _REPEATABLE.get(schema)
        if names is None:
            proxy = MultiDictProxy({}, schema, known_multi_fields=tuple(self.KNOWN_MULTI_FIELDS))
            names = _REPEATABLE[schema] = frozenset(proxy.multiple_keys)
        return names

    def load_json(self, req: Request, schema: Schema) -> Any:
        """The JSON body; one with more unknown fields than a 422 lists is refused here, before
        marshmallow reports each of them (60,000 fit in 1 MiB: 126 ms and a 1.7 MB answer)."""
        data = super().load_json(req, schema)
        if isinstance(data, dict) and len(data) > MAX_UNKNOWN_LISTED:  # else nothing to count
            known = _KNOWN.get(schema)
            if known is None:
                known = _KNOWN[schema] = frozenset(
                    f.data_key or name for name, f in schema.load_fields.items()
                )
            unknown = [name for name in data if name not in known]
            if len(unknown) > MAX_UNKNOWN_LISTED:
                errors: dict[str, list[str]] = {
                    name: ["Unknown field."] for name in unknown[:MAX_UNKNOWN_LISTED]
                }
                errors["_schema"] = [
                    f"{len(unknown)} unknown fields; the first {MAX_UNKNOWN_LISTED} are listed."
                ]
                raise ValidationError(errors)
        return data

    def load_json_or_form(self, req: Request, schema: Schema) -> Any:
        if req.mimetype in FORM_MIMETYPES:
            return self.load_form(req, schema)
        if not is_json_request(req) and req.get_data(cache=True):
            abort(
                415, message="Send the request body as application/json or application/x-www-form-urlencoded."
            )
        return self.load_json(req, schema)

    def _on_validation_error(
        self, error: ValidationError, req: Request, schema: Schema, location: str, **kwargs: Any
    ) -> NoReturn:
        if location == "json_or_form":  # report where the client actually put the field
            location = "form" if req.mimetype in FORM_MIMETYPES else "json"
        super()._on_validation_error(error, req, schema, location, **kwargs)


class Blueprint(flask_smorest.Blueprint):
    """smorest's Blueprint with strict parsing and optional If-Match.

    smorest answers 428 when a PATCH/DELETE lacks If-Match; the SPEC makes it optional (absent:
    proceed, stale: 412), and the comparison happens inside the write transaction, see
    `if_match()`. So the precondition hook, its "check_etag not called" warning and the
    documented 428 are switched off here, once.
    """

    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema: type[Schema] | Schema, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        # webargs instantiates a schema given as a class on every request (~50 µs); one instance
        # serves them all (marshmallow 4 keeps no per-load state on it).
        instance = schema() if isinstance(schema, type) else schema
        return super().arguments(instance, *args, **kwargs)

    def _check_precondition(self) -> None:
        pass

    def _is_etag_enabled(self) -> bool:
        # smorest finds the Api through a blueprint lookup twice per request; one Api per app.
        return not current_app.config.get("ETAG_DISABLED", False)

    def _check_not_modified(self, etag: str) -> None:
        # RFC 9110: If-None-Match compares weakly, and a 304 repeats the ETag.
        if request.method in self.METHODS_CHECKING_NOT_MODIFIED and request.if_none_match.contains_weak(etag):
            not_modified = Response(status=304)
            not_modified.set_etag(etag)
            raise HTTPException(response=not_modified)  # no code: Flask sends the response as is

    def _verify_check_etag(self) -> None:
        pass

    def _prepare_etag_doc(
        self, doc: dict[str, Any], doc_info: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        doc = super()._prepare_etag_doc(doc, doc_info, **kwargs)
        doc.get("responses", {}).pop(428, None)
        return doc

    def if_match(self, render: Callable[[Any], Any]) -> Callable[[Any], bool] | None:
        """A predicate telling whether an object, as `render` shows it, still has the ETag the
        client sent; None when none was sent. A header that names no entity-tag (malformed, or
        empty) is sent all the same: nothing matches it, so the write fails (412), never goes ahead."""
        if "If-Match" not in request.headers:
            return None
        wanted = request.if_match
        return lambda obj: self._generate_etag(render(obj)) in wanted  # `*` matches any

    # Document a json_or_form argument as a request body (JSON; the form is added per view).
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
    }


class Api(flask_smorest.Api):
    def _register_etag_headers(self) -> None:
        # Our If-Match is optional (see Blueprint above): document it so.
        self.spec.components.parameter(
            "IF_NONE_MATCH", "header", flask_smorest.etag.IF_NONE_MATCH_HEADER, lazy=True
        )
        self.spec.components.parameter(
            "IF_MATCH", "header", {**flask_smorest.etag.IF_MATCH_HEADER, "required": False}, lazy=True
        )
        if self.spec.openapi_version.major >= 3:
            self.spec.components.header("ETAG", flask_smorest.etag.ETAG_HEADER, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        payload, code, headers = super().handle_http_exception(error)
        headers = dict(headers or {})
        if code == 405 and getattr(error, "valid_methods", None):
            # smorest's handler drops werkzeug's Allow header.
            headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        if code == 500:
            message = MESSAGES[500]  # never the exception's text
        else:
            message = payload.get("message") or MESSAGES.get(code) or (error.description or "").strip()
        return error_body(code, message, payload.get("errors")), code, headers


API_CONFIG = {
    "API_TITLE": "todoapi",
    "API_VERSION": "1.0.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
    "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True},
    "OPENAPI_REDOC_PATH": "/redoc",
    # Served by the app (todoapi/ops/routes.py): a script from a CDN would run on our origin, where
    # Swagger UI keeps a pasted token in localStorage.
    "OPENAPI_REDOC_URL": "/redoc/assets/redoc.standalone.js",
    "API_SPEC_OPTIONS": {
        "info": {
            "description": "A multi-user TODO service. Log in, then send `Authorization: Bearer <token>`."
        },
        "components": {"securitySchemes": SECURITY_SCHEMES},
    },
}


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON responses, encoded by orjson: a list page's encoding costs a tenth of the
    standard library's. The same JSON for the same data (sorted keys, compact; UTF-8 rather than
    escapes); values orjson does not know, dates included, go through Flask's own `default`."""

    OPTIONS = (
        orjson.OPT_SORT_KEYS
        | orjson.OPT_NON_STR_KEYS  # validation messages key list items by index
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )

    def _encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self.default, option=self.OPTIONS)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        # Strict RFC 8259, for every body the app reads: a lone surrogate, NaN or nesting past
        # 1,024 levels is malformed (400). The standard library takes those, or raises
        # RecursionError, and a string it let through fails later on encoding (500).
        if kwargs:
            return super().loads(s, **kwargs)
        return orjson.loads(s)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        # smorest hashes every ETag's data through here, with sort_keys=True.
        if kwargs.keys() <= {"sort_keys"} and kwargs.get("sort_keys", self.sort_keys):
            return self._encode(obj).decode()
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            # Indented, for people, by Flask's encoder: given what orjson makes of it, since a
            # page embeds JSON text as orjson Fragments, which only orjson can write.
            return cast(Response, super().response(orjson.loads(self._encode(obj))))
        body = self._encode(obj) + b"\n"
        return cast(Response, self._app.response_class(body, mimetype=self.mimetype))  # type: ignore[arg-type]


class AsciiIntegerConverter(IntegerConverter):
    """`<int:…>` for ASCII digits only. Werkzeug's `\\d+` also matches other scripts' digits, which
    `int()` reads: `/todos/%D9%A1` (ARABIC-INDIC DIGIT ONE) would be todo 1."""

    regex = "[0-9]+"


def init_api(app: Flask) -> Api:
    from todoapi.auth.routes import blp as auth_blp
    from todoapi.auth.routes import me_blp
    from todoapi.notifications.routes import blp as notifications_blp
    from todoapi.ops.routes import blp as ops_blp
    from todoapi.ops.routes import metrics_blp
    from todoapi.todos.routes import blp as todos_blp
    from todoapi.todos.routes import stats_blp

    for key, value in API_CONFIG.items():
        app.config.setdefault(key, value)
    app.json = JSONProvider(app)
    app.url_map.converters["int"] = AsciiIntegerConverter
    api = Api(app)  # one Api per app: it holds one app and one spec

    @app.before_request
    def _readable_body() -> None:
        """A compressed body would be read as if it were not (nothing here decompresses): 415.

        A chunked body has no Content-Length for Werkzeug to hold against MAX_CONTENT_LENGTH, and
        its stream then ends at the limit without a word: a body over 1 MiB would read as
        truncated (malformed) JSON instead of 413. So it is read here, up to one byte past."""
        environ = request.environ
        if environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower() != "identity":
            abort(415, message="Send the body without a Content-Encoding.")
        if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return
        limit = app.config["MAX_CONTENT_LENGTH"]
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise RequestEntityTooLarge()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))

    @app.after_request
    def _framing(response: Response) -> Response:
        if response.status_code in (204, 304):
            response.headers.pop("Content-Type", None)
        elif response.status_code == 413:
            # The body stays unread and the server will not drain a megabyte to keep the
            # connection: it closes it, so it must not promise keep-alive (serving.py).
            response.headers["Connection"] = "close"
        return response

    for blueprint in (auth_blp, me_blp, todos_blp, stats_blp, notifications_blp, ops_blp, metrics_blp):
        api.register_blueprint(blueprint)
    return api
