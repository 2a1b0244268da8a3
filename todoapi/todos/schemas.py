from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load
from marshmallow.validate import Length, Range

from todoapi.fields import (
    NON_BLANK,
    FullMatch,
    IsoDate,
    QueryBool,
    QueryDateTime,
    QueryInt,
    StrictBool,
    StrictInt,
    Tags,
    Text,
    TrimmedStr,
    normalize_tag,
)

TITLE = Length(1, 200)
DESCRIPTION = Length(max=10_000)
PRIORITY = Range(1, 5)
MAX_SKIP = 2**31 - 1  # larger offsets overflow the databases' integers
SORT_KEYS = ("created_at", "updated_at", "priority", "due_date", "title")
_SORT_KEY = "-?({})".format("|".join(SORT_KEYS))
# Keys among SORT_KEYS, each at most once: no element is followed by a later one with the same key.
SORT_PATTERN = rf"^(?!(?:[^,]*,)*{_SORT_KEY},(?:[^,]*,)*-?\1(?:,|$)){_SORT_KEY}(?:,{_SORT_KEY})*$"
# The query string has to fit gunicorn's limit_request_line (gunicorn.conf.py) in the worst case,
# every character percent-encoded from four UTF-8 bytes (12 characters); see test_schemathesis.py.
MAX_QUERY_TAGS = 8
MAX_QUERY_TEXT = 200


class TodoSchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(dump_only=True)
    description = fields.String(dump_only=True)
    done = fields.Boolean(dump_only=True)
    priority = fields.Integer(dump_only=True, metadata={"description": "1 (low) to 5 (most urgent)."})
    due_date = fields.Date(dump_only=True, allow_none=True)
    tags = fields.List(fields.String(), dump_only=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


class TodoCreateSchema(Schema):
    title = TrimmedStr(required=True, validate=TITLE, metadata={"pattern": NON_BLANK})
    description = TrimmedStr(load_default="", validate=DESCRIPTION)
    priority = StrictInt(load_default=3, validate=PRIORITY)
    due_date = IsoDate(load_default=None, allow_none=True)
    tags = Tags(load_default=list)


class TodoUpdateSchema(Schema):
    """Every field optional; only `due_date` may be null (it clears the date)."""

    title = TrimmedStr(validate=TITLE, metadata={"pattern": NON_BLANK})
    description = TrimmedStr(validate=DESCRIPTION)
    done = StrictBool()
    priority = StrictInt(validate=PRIORITY)
    due_date = IsoDate(allow_none=True)
    tags = Tags()


class IdempotencyHeaderSchema(Schema):
    key = Text(
        data_key="Idempotency-Key",
        # Valid as Python and as ECMA-262 (the pattern is published in the OpenAPI document).
        validate=FullMatch(r"^[!-~]{1,255}$", error="1-255 visible ASCII characters."),
        metadata={
            "description": "Retry-safe create: same key and body within 24 h replays the first response."
        },
    )


class SortField(Text):
    """`sort=-priority,due_date`: keys among SORT_KEYS, `-` for descending, each at most once."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        order: list[tuple[str, bool]] = []
        for part in super()._deserialize(value, attr, data, **kwargs).split(","):
            key = part.strip()
            descending = key.startswith("-")
            key = key.removeprefix("-")
            if key not in SORT_KEYS:
                raise ValidationError(
                    f"Unknown sort key {key!r}; use {', '.join(SORT_KEYS)} with optional '-'."
                )
            if key in {seen for seen, _ in order}:
                raise ValidationError(f"Sort key {key!r} is given twice.")
            order.append((key, descending))
        return order


class TodoQueryArgsSchema(Schema):
    skip = QueryInt(load_default=0, validate=Range(0, MAX_SKIP))
    limit = QueryInt(load_default=50, validate=Range(1, 100))
    done = QueryBool()
    tag = fields.List(
        Text(validate=Length(max=Tags.MAX_LENGTH)),
        validate=Length(max=MAX_QUERY_TAGS, error="At most {max} tag filters."),
        metadata={"description": f"Repeat to require every tag (at most {MAX_QUERY_TAGS})."},
    )
    q = Text(
        validate=Length(max=MAX_QUERY_TEXT),
        metadata={"description": "Case-insensitive substring of title or description."},
    )
    priority = QueryInt(validate=PRIORITY)
    due_before = IsoDate(metadata={"description": "Due on or before this date."})
    due_after = IsoDate(metadata={"description": "Due on or after this date."})
    updated_since = QueryDateTime(
        metadata={"description": "Changed at or after this instant (no offset: UTC)."}
    )
    sort = SortField(
        load_default=lambda: [("created_at", True)],
        metadata={
            "description": "Comma-separated keys among " + ", ".join(SORT_KEYS) + "; '-' for descending.",
            "pattern": SORT_PATTERN,
        },
    )

    @post_load
    def _normalise(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "tag" in data:
            data["tag"] = sorted({normalize_tag(tag) for tag in data["tag"] if tag.strip()})
        if "q" in data and not data["q"].strip():
            del data["q"]
        return data


class TodoPageSchema(Schema):
    items = fields.List(fields.Nested(TodoSchema), required=True)
    total = fields.Integer(required=True, metadata={"description": "Every match, not just this page."})
    skip = fields.Integer(required=True)
    limit = fields.Integer(required=True)


class StatsSchema(Schema):
    total = fields.Integer(required=True)
    done = fields.Integer(required=True)
    undone = fields.Integer(required=True)
    overdue = fields.Integer(
        required=True, metadata={"description": "Open, due before today (owner's time zone)."}
    )
    due_today = fields.Integer(required=True)
    due_soon = fields.Integer(required=True, metadata={"description": "Open, due today or tomorrow."})
    by_priority = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    by_tag = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
