from typing import Any

from flask import url_for
from flask.views import MethodView

from todoapi.api import Blueprint, ErrorSchema
from todoapi.auth.tokens import caller, login_required
from todoapi.models import Todo
from todoapi.todos import services
from todoapi.todos.schemas import (
    TodoCreateSchema,
    TodoPageSchema,
    TodoQueryArgsSchema,
    TodoSchema,
    TodoUpdateSchema,
)

blp = Blueprint("todos", __name__, url_prefix="/todos", description="The caller's todos.")


@blp.route("")
class Todos(MethodView):
    @login_required
    @blp.arguments(TodoQueryArgsSchema, location="query")
    @blp.response(200, TodoPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List todos, newest first."""
        return services.list_todos(caller().id, args)

    @login_required
    @blp.arguments(TodoCreateSchema)
    @blp.response(201, TodoSchema, headers={"Location": {"schema": {"type": "string"}}})
    def post(self, data: dict[str, Any]) -> tuple[Todo, dict[str, str]]:
        """Create a todo."""
        todo = services.create_todo(caller().id, data)
        return todo, {"Location": url_for("todos.TodoById", todo_id=todo.id)}


@blp.route("/<int:todo_id>")
class TodoById(MethodView):
    @login_required
    @blp.response(200, TodoSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such todo for this user.")
    def get(self, todo_id: int) -> Todo:
        """Get one todo."""
        return services.get_todo(caller().id, todo_id)

    @login_required
    @blp.arguments(TodoUpdateSchema)
    @blp.response(200, TodoSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such todo for this user.")
    def patch(self, changes: dict[str, Any], todo_id: int) -> Todo:
        """Change some fields of a todo; `due_date: null` clears the date."""
        return services.update_todo(caller().id, todo_id, changes)

    @login_required
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="No such todo for this user.")
    def delete(self, todo_id: int) -> None:
        """Delete a todo."""
        services.delete_todo(caller().id, todo_id)
