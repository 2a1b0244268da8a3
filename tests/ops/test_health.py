"""Liveness and readiness, with real dependencies up and really down."""

import time

from tests.conftest import REDIS_URL
from todoapi.db import db, migrate

# Nothing listens on port 1 of loopback: connections are refused at once.
DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/nowhere"
DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_liveness(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.json == {"status": "healthy"}


def test_database_and_readiness_when_all_is_up(client):
    assert client.get("/health/db").json == {"status": "ok", "db": "connected"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "checks": {"db": "ok", "redis": "ok"}}


def test_database_down_is_503_quickly_and_liveness_still_answers(make_app):
    client = make_app(DATABASE_URL=DEAD_POSTGRES).test_client()
    started = time.monotonic()
    response = client.get("/health/db")
    assert time.monotonic() - started < 5  # the contract says 2 s; generous bound for a noisy machine
    assert response.status_code == 503
    assert response.json["status"] == "error" and response.json["db"].startswith("unreachable")
    assert client.get("/health").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json["checks"]["db"] != "ok"


def test_database_down_gives_503_in_the_error_shape_on_api_routes(make_app):
    client = make_app(DATABASE_URL=DEAD_POSTGRES).test_client()
    response = client.post("/auth/login", json={"email": "ann@example.com", "password": "whatever1"})
    assert response.status_code == 503
    assert response.json["code"] == 503 and response.json["status"] == "Service Unavailable"
    assert "Traceback" not in response.get_data(as_text=True)


def test_redis_down_fails_readiness_but_not_todos(make_app):
    client = make_app(REDIS_URL=DEAD_REDIS).test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["status"] == "error"
    assert ready.json["checks"]["db"] == "ok" and ready.json["checks"]["redis"].startswith("unreachable")
    client.post("/auth/register", json={"email": "ann@example.com", "password": "password1"})
    token = client.post("/auth/login", json={"email": "ann@example.com", "password": "password1"}).json
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.post("/todos", json={"title": "works"}, headers=headers).status_code == 201
    assert client.get("/todos", headers=headers).json["total"] == 1
    assert REDIS_URL != DEAD_REDIS


def test_an_unmigrated_database_is_connected_but_not_ready(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    client = app.test_client()

    assert client.get("/health/db").json == {"status": "ok", "db": "connected"}
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["checks"]["db"].startswith("schema not migrated")
    assert ready.json["checks"]["redis"] == "ok"

    with app.app_context():
        migrate(db.obj)
    assert client.get("/health/ready").json == {"status": "ok", "checks": {"db": "ok", "redis": "ok"}}
