"""URLs of the Responses API; include them at any prefix (they start with ``v1/``)."""

from django.urls import path, re_path, register_converter

from responses_app.api import compact, conversations, views
from responses_app.gateway.metrics import metrics_view

app_name = "responses_app"


class IdConverter:
    """A resource id in a path: anything but ``/`` and NUL (ids live in text columns, which cannot
    hold NUL: such a path is simply not found)."""

    regex = "[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(IdConverter, "resource_id")

urlpatterns = [
    path("v1/responses", views.create_response, name="create"),
    path("v1/responses/compact", compact.compact_response, name="compact"),
    path("v1/responses/<resource_id:response_id>", views.response_detail, name="detail"),
    path("v1/responses/<resource_id:response_id>/cancel", views.cancel_response, name="cancel"),
    path("v1/responses/<resource_id:response_id>/input_items", views.list_input_items, name="input-items"),
    path("v1/conversations", conversations.create_conversation, name="conversations"),
    path(
        "v1/conversations/<resource_id:conversation_id>",
        conversations.conversation_detail,
        name="conversation",
    ),
    path(
        "v1/conversations/<resource_id:conversation_id>/items",
        conversations.conversation_items,
        name="conversation-items",
    ),
    path(
        "v1/conversations/<resource_id:conversation_id>/items/<resource_id:item_id>",
        conversations.conversation_item,
        name="conversation-item",
    ),
    path("metrics", metrics_view, name="metrics"),
    re_path(r"^v1/", views.not_found_view, name="not-found"),
]
