from marshmallow import Schema, fields
from marshmallow.validate import Range

from todoapi.fields import QueryBool, QueryInt
from todoapi.todos.schemas import MAX_SKIP


class DeliverySchema(Schema):
    channel = fields.String(required=True, metadata={"example": "webhook"})
    status = fields.String(required=True, metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)


class NotificationSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, metadata={"example": "due_soon"})
    todo_id = fields.Integer(required=True, attribute="todo_id")
    title = fields.String(required=True)
    due_date = fields.Date(required=True)
    created_at = fields.AwareDateTime(required=True)
    read_at = fields.AwareDateTime(required=True, allow_none=True)
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)


class NotificationQueryArgsSchema(Schema):
    skip = QueryInt(load_default=0, validate=Range(0, MAX_SKIP))
    limit = QueryInt(load_default=50, validate=Range(1, 100))
    unread = QueryBool(metadata={"description": "true: only unread; false: only read."})


class NotificationPageSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema), required=True)
    total = fields.Integer(required=True)
    skip = fields.Integer(required=True)
    limit = fields.Integer(required=True)


class ReadAllSchema(Schema):
    updated = fields.Integer(required=True, metadata={"description": "How many were marked read."})
