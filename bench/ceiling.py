"""The ceiling: a bare Flask app serving a fixed JSON list of 50 todo-shaped dicts.

Served by the benchmark on the same gunicorn settings as the service
(`gunicorn -c gunicorn.conf.py bench.ceiling:app`), it is the most any Flask endpoint can do on
the machine: routing, one `jsonify` of 50 todos per request, nothing else. Every endpoint's
server CPU per request is reported as a multiple of this one's.
"""

from datetime import UTC, date, datetime, timedelta

from flask import Flask, Response, jsonify

app = Flask(__name__)

_STAMP = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TODOS = [
    {
        "id": 1000 + n,
        "title": f"review plan {n}",
        "description": "write the work things" if n % 2 else "",
        "done": n % 5 < 2,
        "priority": n % 5 + 1,
        "due_date": (date(2025, 1, 1) + timedelta(days=n)).isoformat() if n % 3 == 0 else None,
        "tags": ["home", "work"][: n % 3],
        "created_at": (_STAMP + timedelta(seconds=n)).isoformat(timespec="microseconds"),
        "updated_at": (_STAMP + timedelta(seconds=n)).isoformat(timespec="microseconds"),
    }
    for n in range(50)
]


@app.get("/todos")
def todos() -> Response:
    return jsonify(TODOS)


@app.get("/health")
def health() -> Response:
    return jsonify(status="healthy")
