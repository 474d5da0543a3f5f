"""URLs of the Responses API; include them at any prefix (they start with ``v1/``)."""

from django.urls import path, re_path

from responses_app.api import compact, conversations, views
from responses_app.gateway.metrics import metrics_view

app_name = "responses_app"

urlpatterns = [
    path("v1/responses", views.create_response, name="create"),
    path("v1/responses/compact", compact.compact_response, name="compact"),
    path("v1/responses/<str:response_id>", views.response_detail, name="detail"),
    path("v1/responses/<str:response_id>/cancel", views.cancel_response, name="cancel"),
    path("v1/responses/<str:response_id>/input_items", views.list_input_items, name="input-items"),
    path("v1/conversations", conversations.create_conversation, name="conversations"),
    path("v1/conversations/<str:conversation_id>", conversations.conversation_detail, name="conversation"),
    path(
        "v1/conversations/<str:conversation_id>/items",
        conversations.conversation_items,
        name="conversation-items",
    ),
    path(
        "v1/conversations/<str:conversation_id>/items/<str:item_id>",
        conversations.conversation_item,
        name="conversation-item",
    ),
    path("metrics", metrics_view, name="metrics"),
    re_path(r"^v1/", views.not_found_view, name="not-found"),
]
