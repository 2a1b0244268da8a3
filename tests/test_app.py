"""The application class: its request values and its remembered answers to "is this a coroutine"."""

import gc
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.datastructures import ImmutableMultiDict

from todoapi import App, Values

PAIRS = [("skip", "10"), ("tag", "work"), ("tag", "home"), ("q", "")]


@pytest.mark.parametrize(
    ("key", "default", "convert"),
    [
        ("skip", None, None),
        ("skip", -1, int),
        ("tag", None, None),
        ("q", "absent", None),
        ("limit", None, None),
        ("limit", 50, int),
        ("tag", -1, int),  # the conversion fails: the default
    ],
)
def test_values_answer_as_werkzeugs_multidict(key: str, default: Any, convert: Any) -> None:
    ours, theirs = Values(PAIRS), ImmutableMultiDict(PAIRS)
    assert ours.get(key, default, convert) == theirs.get(key, default, convert)
    assert ours.get(key) == theirs.get(key)
    assert ours.getlist(key) == theirs.getlist(key)


def test_requests_parse_their_query_into_values() -> None:
    app = App(__name__)
    with app.test_request_context("/todos?tag=a&tag=b&limit=5"):
        assert isinstance(request.args, Values)
        assert request.args.getlist("tag") == ["a", "b"]
        assert request.args.get("limit", type=int) == 5
        assert request.args.get("skip", 0, int) == 0


def test_ensure_sync_answers_as_flasks() -> None:
    app = App(__name__)

    def plain() -> str:
        return "plain"

    async def coroutine() -> str:
        return "coroutine"

    for _ in range(2):  # the second time from what it remembered
        assert app.ensure_sync(plain) is plain
        try:
            expected: Callable[..., Any] | type[BaseException] = Flask.ensure_sync(app, coroutine)
        except RuntimeError:  # Flask's async support is an extra, not installed
            expected = RuntimeError
        if expected is RuntimeError:
            with pytest.raises(RuntimeError):
                app.ensure_sync(coroutine)
        else:
            assert app.ensure_sync(coroutine) is not coroutine
            assert app.ensure_sync(coroutine)() == "coroutine"


def test_ensure_sync_keeps_no_function_alive() -> None:
    app = App(__name__)
    for n in range(100):
        app.ensure_sync(lambda n=n: n)  # e.g. a request's after_this_request callback
    gc.collect()
    assert len(app._plain) == 0
