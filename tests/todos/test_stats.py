"""GET /stats: counts over the caller's todos, "today" in the owner's time zone, on SQLite and PostgreSQL."""

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from todoapi.db import db
from todoapi.models import User
from todoapi.todos.services import todo_stats

KEYS = {"total", "done", "undone", "overdue", "due_today", "due_soon", "by_priority", "by_tag"}
NO_PRIORITIES = {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
WEST, EAST = "Etc/GMT+11", "Pacific/Kiritimati"  # UTC-11 and UTC+14: 25 hours apart

Due = tuple[date | None, bool]  # (due_date, done)


def create(client: FlaskClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    done = body.pop("done", False)
    due = body.pop("due_date", None)
    payload = {"title": "t", **body, "due_date": due.isoformat() if due else None}
    response = client.post("/todos", json=payload, headers=auth)
    assert response.status_code == 201, response.json
    if done:
        finished = client.patch(response.headers["Location"], json={"done": True}, headers=auth)
        assert finished.status_code == 200, finished.json
    return response.json


def create_all(client: FlaskClient, auth: dict[str, str], dues: Iterable[Due]) -> None:
    for due, done in dues:
        create(client, auth, due_date=due, done=done)


def stats(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    response = client.get("/stats", headers=auth)
    assert response.status_code == 200, response.json
    return response.json


def due_counts(dues: Iterable[Due], today: date) -> dict[str, int]:
    """What overdue / due_today / due_soon must be for these todos on `today` (open ones only)."""
    open_dates = [due for due, done in dues if due is not None and not done]
    return {
        "overdue": sum(due < today for due in open_dates),
        "due_today": sum(due == today for due in open_dates),
        "due_soon": sum(today <= due <= today + timedelta(days=1) for due in open_dates),
    }


def pick(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: body[name] for name in names}


def set_timezone(client: FlaskClient, auth: dict[str, str], timezone: str) -> None:
    response = client.patch("/me", json={"timezone": timezone}, headers=auth)
    assert response.status_code == 200 and response.json["timezone"] == timezone, response.json


def local_today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def stats_with_today(client: FlaskClient, auth: dict[str, str], timezone: str) -> tuple[dict[str, Any], date]:
    """/stats and the owner's local date it was computed on; retried once across a midnight."""
    for _ in range(2):
        before = local_today(timezone)
        body = stats(client, auth)
        if local_today(timezone) == before:
            return body, before
    pytest.fail("the local date changed during both attempts")


def by_date(counts: dict[date, int]) -> list[Due]:
    """`n` open todos due on each date: distinct amounts make a count tell which dates it took."""
    return [(due, False) for due, n in counts.items() for _ in range(n)]


# --- Shape and plain counts --------------------------------------------------------------------


def test_an_empty_account_has_all_zeros(client, auth):
    assert stats(client, auth) == {
        "total": 0,
        "done": 0,
        "undone": 0,
        "overdue": 0,
        "due_today": 0,
        "due_soon": 0,
        "by_priority": NO_PRIORITIES,
        "by_tag": {},
    }


def test_counts_by_state_priority_and_tag(client, auth):
    create(client, auth, priority=5, tags=["work", "urgent"])
    create(client, auth, priority=5, tags=["work"], done=True)
    create(client, auth, priority=1, tags=["home"], done=True)
    create(client, auth, tags=["Home", "errands"])
    create(client, auth)
    body = stats(client, auth)
    assert set(body) == KEYS
    assert pick(body, "total", "done", "undone") == {"total": 5, "done": 2, "undone": 3}
    assert body["by_priority"] == {"1": 1, "2": 0, "3": 2, "4": 0, "5": 2}
    assert body["by_tag"] == {"errands": 1, "home": 2, "urgent": 1, "work": 2}


def test_by_tag_follows_changes_and_deletes(client, auth):
    kept = create(client, auth, tags=["a", "b"])
    gone = create(client, auth, tags=["b", "c"])
    assert stats(client, auth)["by_tag"] == {"a": 1, "b": 2, "c": 1}
    assert client.patch(f"/todos/{kept['id']}", json={"tags": ["d"]}, headers=auth).status_code == 200
    assert client.delete(f"/todos/{gone['id']}", headers=auth).status_code == 204
    body = stats(client, auth)
    assert body["by_tag"] == {"d": 1}
    assert body["total"] == 1 and body["by_priority"] == NO_PRIORITIES | {"3": 1}


def test_due_counts_cover_open_todos_only_but_priority_and_tags_cover_all(client, auth):
    set_timezone(client, auth, "UTC")
    today = local_today("UTC")
    dues: list[Due] = []
    for offset, done in [(-3, False), (-1, True), (0, False), (0, True), (1, False), (1, True), (2, False)]:
        due = today + timedelta(days=offset)
        create(client, auth, due_date=due, done=done, priority=2 if done else 4, tags=["x"])
        dues.append((due, done))
    create(client, auth, priority=4)  # no due date: in no due count
    body, today = stats_with_today(client, auth, "UTC")
    assert pick(body, "overdue", "due_today", "due_soon") == due_counts(dues, today)
    assert pick(body, "total", "done", "undone") == {"total": 8, "done": 3, "undone": 5}
    assert body["by_priority"] == NO_PRIORITIES | {"2": 3, "4": 5}
    assert body["by_tag"] == {"x": 7}


def test_another_users_todos_are_never_counted(client, auth, other_auth):
    mine = local_today("UTC")
    create(client, auth, priority=2, tags=["mine"], due_date=mine)
    for offset in (-1, 0, 1):
        create(
            client, other_auth, priority=5, tags=["mine", "theirs"], due_date=mine + timedelta(days=offset)
        )
    create(client, other_auth, done=True)
    body, today = stats_with_today(client, auth, "UTC")
    assert pick(body, "total", "done", "undone") == {"total": 1, "done": 0, "undone": 1}
    assert pick(body, "overdue", "due_today", "due_soon") == due_counts([(mine, False)], today)
    assert body["by_priority"] == NO_PRIORITIES | {"2": 1}
    assert body["by_tag"] == {"mine": 1}
    assert stats(client, other_auth)["total"] == 4


# --- "Today" is the owner's local date ---------------------------------------------------------

ZONES = [WEST, "UTC", EAST]


def test_each_owner_counts_their_own_local_days(client, register):
    """Yesterday / today / tomorrow / the day after, each in the owner's zone: identical counts
    for every owner, which a server using UTC's date for everyone gets wrong for someone."""
    owners = {}
    for n, timezone in enumerate(ZONES):
        auth = register(f"zone{n}@example.com")
        set_timezone(client, auth, timezone)
        today = local_today(timezone)
        dues = by_date({today + timedelta(days=offset): offset + 2 for offset in (-1, 0, 1, 2)})
        dues += [(today - timedelta(days=1), True), (today, True)]
        create_all(client, auth, dues)
        owners[timezone] = (auth, dues)
    for timezone, (auth, dues) in owners.items():
        body, today = stats_with_today(client, auth, timezone)
        assert pick(body, "overdue", "due_today", "due_soon") == due_counts(dues, today), timezone
        assert pick(body, "total", "done") == {"total": len(dues), "done": 2}


def test_the_same_due_dates_count_differently_across_the_date_line(client, register):
    """One set of dates for three owners. West (UTC-11) and east (UTC+14) are always on
    different calendar days, so their overdue counts always differ."""
    utc_today = local_today("UTC")
    dues = by_date({utc_today + timedelta(days=offset): offset + 3 for offset in range(-2, 4)})
    dues += [(utc_today + timedelta(days=offset), True) for offset in range(-2, 4)]
    results = {}
    for n, timezone in enumerate(ZONES):
        auth = register(f"line{n}@example.com")
        set_timezone(client, auth, timezone)
        create_all(client, auth, dues)
        body, today = stats_with_today(client, auth, timezone)
        assert pick(body, "overdue", "due_today", "due_soon") == due_counts(dues, today), timezone
        results[timezone] = (today, body["overdue"])
    assert results[WEST][0] < results[EAST][0]
    assert results[WEST][1] < results[EAST][1], results


# --- The service with an injected "now": the date line and DST -------------------------------

JUNE = [
    *by_date({date(2026, 6, 13) + timedelta(days=i): i + 1 for i in range(5)}),
    (date(2026, 6, 14), True),
    (date(2026, 6, 15), True),
    (None, False),
]

DATE_LINE_CASES = [
    # 10:30 UTC: 23:30 the day before in UTC-11, 00:30 the day after in UTC+14.
    (datetime(2026, 6, 15, 10, 30, tzinfo=UTC), (date(2026, 6, 14), date(2026, 6, 15), date(2026, 6, 16))),
    (datetime(2026, 6, 15, 9, 59, tzinfo=UTC), (date(2026, 6, 14), date(2026, 6, 15), date(2026, 6, 15))),
    (datetime(2026, 6, 15, 11, 0, tzinfo=UTC), (date(2026, 6, 15), date(2026, 6, 15), date(2026, 6, 16))),
    (datetime(2026, 6, 15, 0, 0, tzinfo=UTC), (date(2026, 6, 14), date(2026, 6, 15), date(2026, 6, 15))),
    (datetime(2026, 6, 14, 23, 59, tzinfo=UTC), (date(2026, 6, 14), date(2026, 6, 14), date(2026, 6, 15))),
]


def test_todo_stats_across_the_date_line(app, client, auth):
    create_all(client, auth, JUNE)
    user_id = client.get("/me", headers=auth).json["id"]
    wrong = {}
    with app.app_context():
        for now, local_dates in DATE_LINE_CASES:
            for timezone, today in zip(ZONES, local_dates, strict=True):
                user = User.get_by_id(user_id)
                user.timezone = timezone
                body = todo_stats(user, now=now)
                assert pick(body, "total", "done", "undone") == {"total": len(JUNE), "done": 2, "undone": 16}
                got, want = pick(body, "overdue", "due_today", "due_soon"), due_counts(JUNE, today)
                if got != want:
                    wrong[f"{now:%Y-%m-%d %H:%M}Z in {timezone}"] = (got, want)
    assert not wrong


NEW_YORK = "America/New_York"
DST = by_date(
    {date(2026, 3, 7) + timedelta(days=i): i + 1 for i in range(4)}
    | {date(2026, 10, 31) + timedelta(days=i): i + 5 for i in range(4)}
)


DST_CASES = [
    # Spring forward: 2026-03-08 02:00 EST (07:00 UTC) becomes 03:00 EDT.
    (datetime(2026, 3, 8, 4, 59, 59, tzinfo=UTC), date(2026, 3, 7)),  # 23:59:59 EST
    (datetime(2026, 3, 8, 5, 0, tzinfo=UTC), date(2026, 3, 8)),  # 00:00 EST
    (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), date(2026, 3, 8)),  # 03:30 EDT
    (datetime(2026, 3, 9, 3, 59, tzinfo=UTC), date(2026, 3, 8)),  # 23:59 EDT
    (datetime(2026, 3, 9, 4, 30, tzinfo=UTC), date(2026, 3, 9)),  # 00:30 EDT (EST would say 23:30)
    # Fall back: 2026-11-01 02:00 EDT (06:00 UTC) becomes 01:00 EST.
    (datetime(2026, 11, 1, 3, 59, tzinfo=UTC), date(2026, 10, 31)),  # 23:59 EDT
    (datetime(2026, 11, 1, 4, 0, tzinfo=UTC), date(2026, 11, 1)),  # 00:00 EDT
    (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), date(2026, 11, 1)),  # 01:30 EDT, the first one
    (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), date(2026, 11, 1)),  # 01:30 EST, the second one
    (datetime(2026, 11, 2, 4, 30, tzinfo=UTC), date(2026, 11, 1)),  # 23:30 EST (EDT would say 00:30)
    (datetime(2026, 11, 2, 5, 0, tzinfo=UTC), date(2026, 11, 2)),  # 00:00 EST
]


def test_todo_stats_across_daylight_saving_changes(app, client, auth):
    create_all(client, auth, DST)
    user_id = client.get("/me", headers=auth).json["id"]
    wrong = {}
    with app.app_context():
        for now, today in DST_CASES:
            user = User.get_by_id(user_id)
            user.timezone = NEW_YORK
            got = pick(todo_stats(user, now=now), "overdue", "due_today", "due_soon")
            if got != due_counts(DST, today):
                wrong[f"{now:%Y-%m-%d %H:%M}Z"] = (got, due_counts(DST, today))
    assert not wrong


# --- Cost ----------------------------------------------------------------------------------------


@pytest.fixture
def statements(app, monkeypatch) -> list[str]:
    """SQL sent to the database (wraps the real method: it observes and fakes nothing)."""
    sent: list[str] = []
    database_class = type(db.obj)
    real = database_class.execute_sql

    def counting(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(sql)
        return real(self, sql, *args, **kwargs)

    monkeypatch.setattr(database_class, "execute_sql", counting)
    return sent


def test_stats_cost_a_small_fixed_number_of_queries(client, auth, statements):
    def cost(path: str) -> int:
        statements.clear()
        assert client.get(path, headers=auth).status_code == 200
        return len(statements)

    today = local_today("UTC")

    def add(n: int) -> None:
        for i in range(n):
            create(
                client, auth, priority=i % 5 + 1, tags=[f"t{i % 7}", "all"], due_date=today, done=i % 3 == 0
            )

    add(3)
    authentication = cost("/me")
    small = cost("/stats")
    add(27)
    large = cost("/stats")
    assert stats(client, auth)["total"] == 30
    assert small == large, statements
    assert authentication == 1 and 1 <= large - authentication <= 3, statements
