from typing import Any

from flask.views import MethodView

from todoapi.api import LINK_HEADER, Blueprint, ErrorSchema, page_links
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
    @blp.response(200, NotificationPageSchema, headers=LINK_HEADER)
    def get(self, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """List notifications, newest first."""
        page = services.list_notifications(caller().id, args)
        links = page_links(page["skip"], page["limit"], page["total"])
        return page, ({"Link": links} if links else {})


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
