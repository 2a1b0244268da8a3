from typing import Any

from flask import Response, jsonify, request, url_for
from flask.views import MethodView

from todoapi.api import LINK_HEADER, Blueprint, ErrorSchema, page_links
from todoapi.auth.tokens import caller, claim, login_required, login_required_in_query
from todoapi.models import Todo
from todoapi.todos import services
from todoapi.todos.schemas import (
    IdempotencyHeaderSchema,
    StatsSchema,
    TodoCreateSchema,
    TodoPageSchema,
    TodoQueryArgsSchema,
    TodoSchema,
    TodoUpdateSchema,
)

blp = Blueprint("todos", __name__, url_prefix="/todos", description="The caller's todos.")
stats_blp = Blueprint("stats", __name__, url_prefix="/stats", description="Counts over the caller's todos.")

LOCATION_HEADER = {"Location": {"schema": {"type": "string"}}}


# The views below return ready responses: bodies are built by `services.todo_json` (equal to what
# the documented schemas dump, and tested so) instead of a marshmallow dump per todo per request.


def render(todo: Todo) -> tuple[dict[str, Any], str]:
    return services.todo_json(todo), url_for("todos.TodoById", todo_id=todo.id)


def todo_response(body: dict[str, Any]) -> Response:
    """One todo's body with its ETag (a 304 instead when If-None-Match already has it)."""
    blp.set_etag(body)
    return jsonify(body)


@blp.route("")
class Todos(MethodView):
    @login_required_in_query
    @blp.arguments(TodoQueryArgsSchema, location="query")
    @blp.response(200, TodoPageSchema, headers=LINK_HEADER)
    def get(self, args: dict[str, Any]) -> tuple[Response, dict[str, str]]:
        """List todos: filter, search, sort and page."""
        page = services.list_todos(claim(), args)
        links = page_links(page["skip"], page["limit"], page["total"])
        return jsonify(page), ({"Link": links} if links else {})

    @login_required_in_query
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(TodoCreateSchema)
    @blp.response(201, TodoSchema, headers=LOCATION_HEADER)
    @blp.alt_response(
        422, schema=ErrorSchema, description="Invalid body, or Idempotency-Key reused with another body."
    )
    def post(
        self, headers: dict[str, str], data: dict[str, Any]
    ) -> Response | tuple[Response, int, dict[str, str]]:
        """Create a todo (send `Idempotency-Key` to make retries safe)."""
        if "key" not in headers:
            todo = services.create_todo(claim(), data)
            body, location = render(todo)
            return jsonify(body), 201, {"Location": location}
        result = services.create_todo_once(caller().id, data, headers["key"], request.get_json(), render)
        if isinstance(result, services.Replay):
            replay = jsonify(result.body)
            replay.status_code = result.status
            replay.headers.update({"Location": result.location, "Idempotent-Replayed": "true"})
            return replay
        body, location = render(result)
        return jsonify(body), 201, {"Location": location}


@blp.route("/<int:todo_id>")
@blp.etag
class TodoById(MethodView):
    @login_required_in_query
    @blp.response(200, TodoSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such todo for this user.")
    def get(self, todo_id: int) -> Response:
        """Get one todo (`If-None-Match` answers 304 when unchanged)."""
        return todo_response(services.get_todo_json(claim(), todo_id))

    @login_required_in_query
    @blp.arguments(TodoUpdateSchema, required=False)
    @blp.response(200, TodoSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such todo for this user.")
    def patch(self, changes: dict[str, Any], todo_id: int) -> Response:
        """Change some fields of a todo; `due_date: null` clears the date. `If-Match` is optional."""
        todo = services.update_todo(claim(), todo_id, changes, blp.if_match(services.todo_json))
        return todo_response(services.todo_json(todo))

    @login_required_in_query
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="No such todo for this user.")
    def delete(self, todo_id: int) -> None:
        """Delete a todo. `If-Match` is optional."""
        services.delete_todo(claim(), todo_id, blp.if_match(services.todo_json))


@stats_blp.route("")
class Stats(MethodView):
    @login_required
    @stats_blp.response(200, StatsSchema)
    def get(self) -> Response:
        """Counts by state, due date (in the owner's time zone), priority and tag."""
        return jsonify(services.todo_stats(caller()))
