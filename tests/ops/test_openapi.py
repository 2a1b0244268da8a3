"""The OpenAPI document: valid, complete, and honest about security and errors."""

import base64
import hashlib
import re
import sys

import jsonschema_rs
import pytest
from openapi_spec_validator import validate

from todoapi.fields import SPACE

UNDOCUMENTED = {
    "static",
    "swagger_asset",
    "swagger_init",
    "redoc_asset",
    "api-docs.openapi_json",
    "api-docs.openapi_swagger_ui",
    "api-docs.openapi_redoc",
}


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def test_spec_is_valid_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_every_route_is_documented(app, spec):
    documented = {(path, method.upper()) for path, method, _ in operations(spec)}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED:
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)


def test_every_operation_documents_its_responses_in_the_error_shape(spec):
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), (path, method)
        assert "default" in responses, (path, method)
        for code, response in responses.items():
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            if code[0] in "45" and not path.startswith("/health"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, code)
    assert set(spec["components"]["schemas"]["Error"]["properties"]) == {
        "code",
        "status",
        "message",
        "errors",
    }


def test_security_schemes_and_protected_operations(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["oauth2Password"]["flows"]["password"]["tokenUrl"] == "/auth/login"
    public = {("/auth/register", "post"), ("/auth/login", "post")}
    for path, method, operation in operations(spec):
        if path.startswith("/health") or path == "/metrics" or (path, method) in public:
            assert "security" not in operation, (path, method)
        else:
            assert {"bearerAuth": []} in operation["security"], (path, method)
            assert "401" in operation["responses"], (path, method)


def test_login_documents_json_and_the_oauth2_form(spec):
    content = spec["paths"]["/auth/login"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-www-form-urlencoded"}


def test_docs_pages_are_served_with_local_assets(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    html = docs.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    assert "<script>" not in html and '<script src="/docs/init.js">' in html
    assert docs.headers["Content-Security-Policy"].startswith("default-src 'self';")
    assert client.get("/docs/init.js").status_code == 200
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    redoc = client.get("/redoc")
    html = redoc.get_data(as_text=True)
    assert redoc.status_code == 200 and "/openapi.json" in html
    assert "/redoc/assets/redoc.standalone.js" in html and "cdn" not in html.lower()
    policy = redoc.headers["Content-Security-Policy"]
    assert "default-src 'self';" in policy and "frame-ancestors 'none'" in policy
    bundle = client.get("/redoc/assets/redoc.standalone.js")
    assert bundle.status_code == 200 and bundle.mimetype == "text/javascript"
    # The file scripts/fetch-redoc wrote: the digest its VERSION records.
    version = client.get("/redoc/assets/VERSION").get_data(as_text=True).split()
    assert version[0] == "redoc" and re.fullmatch(r"2\.\d+\.\d+", version[1])
    assert version[2] == "sha384-" + base64.b64encode(hashlib.sha384(bundle.data).digest()).decode()


def patterns(node):
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns(value)


def test_every_pattern_is_anchored_and_read_alike_by_python_and_the_validators(spec):
    """Patterns search (JSON Schema), so each is anchored; `$`, not Python's `\\Z` (not ECMA-262)."""
    found = set(patterns(spec))
    assert len(found) >= 7, found  # NUL, non-blank, email, time zone, URL, sort, Idempotency-Key
    for pattern in found:
        assert pattern.startswith("^") and pattern.endswith("$") and "\\Z" not in pattern, pattern
        re.compile(pattern)
        jsonschema_rs.validator_for({"pattern": pattern})  # the Rust engine schemathesis validates with


def test_request_strings_document_that_nul_is_refused(spec):
    schemas = spec["components"]["schemas"]
    for name in ("TodoCreate", "TodoUpdate", "UserRegister", "UserLogin", "UserUpdate"):
        for field, schema in schemas[name]["properties"].items():
            schema = schema.get("items", schema) if schema.get("type") == "array" else schema
            if (schema.get("type") == "string" and "format" not in schema) or field == "email":
                assert "pattern" in schema and not re.search(schema["pattern"], "a\x00"), (name, field)


def test_the_whitespace_class_is_what_str_strip_removes():
    space = re.compile(f"[{SPACE}]")
    for code in range(sys.maxunicode + 1):
        assert (space.match(chr(code)) is not None) == chr(code).isspace(), hex(code)
