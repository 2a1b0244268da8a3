from marshmallow import Schema, fields
from marshmallow.validate import Length, Range

from todoapi.fields import IsoDate, QueryBool, StrictBool, StrictInt, Tags, Text, TrimmedStr

TITLE = Length(1, 200)
DESCRIPTION = Length(max=10_000)
PRIORITY = Range(1, 5)


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
    title = TrimmedStr(required=True, validate=TITLE)
    description = TrimmedStr(load_default="", validate=DESCRIPTION)
    priority = StrictInt(load_default=3, validate=PRIORITY)
    due_date = IsoDate(load_default=None, allow_none=True)
    tags = Tags(load_default=list)


class TodoUpdateSchema(Schema):
    """Every field optional; only `due_date` may be null (it clears the date)."""

    title = TrimmedStr(validate=TITLE)
    description = TrimmedStr(validate=DESCRIPTION)
    done = StrictBool()
    priority = StrictInt(validate=PRIORITY)
    due_date = IsoDate(allow_none=True)
    tags = Tags()


class TodoQueryArgsSchema(Schema):
    skip = fields.Integer(load_default=0, validate=Range(min=0))
    limit = fields.Integer(load_default=50, validate=Range(1, 100))
    done = QueryBool()
    tag = fields.List(Text(validate=Length(max=50)), metadata={"description": "Repeat to AND tags."})


class TodoPageSchema(Schema):
    items = fields.List(fields.Nested(TodoSchema), required=True)
    total = fields.Integer(required=True, metadata={"description": "Every match, not just this page."})
    skip = fields.Integer(required=True)
    limit = fields.Integer(required=True)
