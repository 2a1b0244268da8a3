"""Responses are encoded by orjson: the JSON must mean what Flask's own encoder would have said."""

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from flask import jsonify
from flask.json.provider import DefaultJSONProvider
from hypothesis import given, settings
from hypothesis import strategies as st

from todoapi import create_app
from todoapi.api import JSONProvider

APP = create_app({"DATABASE_URL": "sqlite:///:memory:"})
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.dates()
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def _flask_default(value):
    with APP.app_context():
        return json.loads(DefaultJSONProvider(APP).response(value).get_data())


@settings(max_examples=200, deadline=None)
@given(value=VALUES)
def test_a_response_means_what_flasks_own_encoder_says(value):
    assert isinstance(APP.json, JSONProvider)
    with APP.app_context():
        ours = jsonify(value)
    assert ours.mimetype == "application/json"
    assert json.loads(ours.get_data()) == _flask_default(value)
    # smorest hashes ETag data through `dumps(sort_keys=True)`
    with APP.app_context():
        assert json.loads(APP.json.dumps(value, sort_keys=True)) == json.loads(
            DefaultJSONProvider(APP).dumps(value, sort_keys=True)
        )


def test_keys_are_sorted_and_dates_are_http_dates_as_before():
    value = {
        "b": [date(2025, 1, 2), datetime(2025, 1, 1, 12, tzinfo=UTC)],
        "a": Decimal("1.5"),
        1: uuid.UUID(int=5),
    }
    with APP.app_context():
        body = jsonify(value).get_data(as_text=True)
    assert body == (
        '{"1":"00000000-0000-0000-0000-000000000005","a":"1.5",'
        '"b":["Thu, 02 Jan 2025 00:00:00 GMT","Wed, 01 Jan 2025 12:00:00 GMT"]}\n'
    )


def test_other_dumps_arguments_are_the_standard_librarys():
    with APP.app_context():
        assert APP.json.dumps({"b": 1, "a": "é"}, indent=1) == '{\n "a": "\\u00e9",\n "b": 1\n}'


def test_debug_responses_stay_indented():
    app = create_app({"DATABASE_URL": "sqlite:///:memory:", "DEBUG": True})
    with app.app_context():
        assert jsonify({"a": 1}).get_data(as_text=True) == '{\n  "a": 1\n}\n'
        # A page's tags are the database's JSON text, embedded as orjson Fragments.
        assert jsonify({"tags": orjson.Fragment('["a", "b"]')}).get_data(as_text=True) == (
            '{\n  "tags": [\n    "a",\n    "b"\n  ]\n}\n'
        )


def test_json_text_is_embedded_as_it_is():
    with APP.app_context():
        body = jsonify({"items": [{"tags": orjson.Fragment('["home", "work"]'), "id": 1}]}).get_data()
    assert body == b'{"items":[{"id":1,"tags":["home", "work"]}]}\n'
