"""One error shape for every failure, routing and crashes included."""

import logging

from tests.helpers import assert_error


def test_unknown_route_is_404_json(client):
    response = client.get("/no/such/thing")
    assert_error(response, 404)
    assert response.content_type == "application/json"


def test_wrong_method_is_405_with_allow(client):
    response = client.put("/todos")
    assert_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_a_crash_is_500_without_the_traceback_and_is_logged(app, caplog):
    def explode():
        raise RuntimeError("secret internals: dsn=postgres://user:hunter2@db")

    app.add_url_rule("/explode", "explode", explode)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # TESTING re-raises; production does not
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/explode")
    assert_error(response, 500)
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert any(record.exc_info and record.exc_info[0] is RuntimeError for record in caplog.records)
