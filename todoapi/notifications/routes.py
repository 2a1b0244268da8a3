from typing import Any

from flask.views import MethodView

from todoapi.api import Blueprint, ErrorSchema
from todoapi.auth.tokens import caller, login_required
from todoapi.models import Notification
from todoapi.notifications import services
from todoapi.notifications.schemas import (
    NotificationPageSchema,
    NotificationQueryArgsSchema,
    NotificationSchema,
    ReadAllSchema,
)

blp = Blueprint("notifications", __name__, url_prefix="/notifications", description="The caller's inbox.")


@blp.route("")
class Notifications(MethodView):
    @login_required
    @blp.arguments(NotificationQueryArgsSchema, location="query")
    @blp.response(200, NotificationPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List notifications, newest first."""
        return services.list_notifications(caller().id, args)


@blp.route("/<int:notification_id>/read")
class NotificationRead(MethodView):
    @login_required
    @blp.response(200, NotificationSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such notification for this user.")
    def post(self, notification_id: int) -> Notification:
        """Mark one notification read."""
        return services.mark_read(caller().id, notification_id)


@blp.route("/read-all")
class NotificationsReadAll(MethodView):
    @login_required
    @blp.response(200, ReadAllSchema)
    def post(self) -> dict[str, int]:
        """Mark every unread notification read."""
        return {"updated": services.mark_all_read(caller().id)}
