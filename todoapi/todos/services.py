"""Todo rules and queries. Every query is scoped to its owner."""

from datetime import datetime, timedelta
from typing import Any

from peewee import ModelSelect

from todoapi.db import db
from todoapi.errors import NotFound
from todoapi.models import Todo, TodoTag, utcnow

DEFAULT_ORDER = (Todo.created_at.desc(), Todo.id.desc())


def _next_timestamp(previous: datetime | None = None) -> datetime:
    """Now, but strictly after `previous`, so `updated_at` moves on every change."""
    now = utcnow()
    if previous is not None and now <= previous:
        now = previous + timedelta(microseconds=1)
    return now


def _write_tags(user_id: int, todo: Todo, replace: bool = False) -> None:
    if replace:
        TodoTag.delete().where(TodoTag.todo == todo.id).execute()
    if todo.tags:
        TodoTag.insert_many([{"todo": todo.id, "user": user_id, "tag": tag} for tag in todo.tags]).execute()


def create_todo(user_id: int, data: dict[str, Any]) -> Todo:
    now = _next_timestamp()
    with db.atomic():
        todo = Todo.create(user=user_id, created_at=now, updated_at=now, **data)
        _write_tags(user_id, todo)
    return todo


def get_todo(user_id: int, todo_id: int) -> Todo:
    todo = Todo.owned_by(user_id).where(Todo.id == todo_id).first()
    if todo is None:
        raise NotFound("Todo not found.")
    return todo


def update_todo(user_id: int, todo_id: int, changes: dict[str, Any]) -> Todo:
    with db.atomic():
        todo = get_todo(user_id, todo_id)
        changed = {name: value for name, value in changes.items() if getattr(todo, name) != value}
        if not changed:
            return todo
        for name, value in changed.items():
            setattr(todo, name, value)
        todo.updated_at = _next_timestamp(todo.updated_at)
        todo.save(only=[*(getattr(Todo, name) for name in changed), Todo.updated_at])
        if "tags" in changed:
            _write_tags(user_id, todo, replace=True)
    return todo


def delete_todo(user_id: int, todo_id: int) -> None:
    deleted = Todo.delete().where((Todo.user == user_id) & (Todo.id == todo_id)).execute()
    if not deleted:
        raise NotFound("Todo not found.")


def filtered_todos(user_id: int, args: dict[str, Any]) -> "ModelSelect[Todo]":
    """The caller's todos matching every filter in `args` (unordered, unpaged)."""
    query = Todo.owned_by(user_id)
    if "done" in args:
        query = query.where(Todo.done == args["done"])
    for tag in {tag.strip().lower() for tag in args.get("tag", [])}:
        # One index probe on todo_tags(user_id, tag, todo_id) per tag; together they AND.
        carrying = TodoTag.select(TodoTag.todo).where((TodoTag.user == user_id) & (TodoTag.tag == tag))
        query = query.where(Todo.id.in_(carrying))
    return query


def list_todos(user_id: int, args: dict[str, Any]) -> dict[str, Any]:
    query = filtered_todos(user_id, args)
    skip, limit = args["skip"], args["limit"]
    items = list(query.order_by(*DEFAULT_ORDER).offset(skip).limit(limit))
    return {"items": items, "total": query.count(), "skip": skip, "limit": limit}
