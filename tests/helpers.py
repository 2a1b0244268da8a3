"""Assertions shared by the tests."""

from werkzeug.test import TestResponse


def assert_error(response: TestResponse, status: int, *fields: str, location: str = "json") -> None:
    """The SPEC's error shape, with `errors` naming each field when fields are given."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    for field in fields:
        assert field in body["errors"][location], body
