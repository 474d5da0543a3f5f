"""Thin HTTP views of the Conversations API: parse, call services and selectors, shape the answer."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from responses_app import selectors
from responses_app.api.conversation_params import (
    parse_add,
    parse_create,
    parse_include,
    parse_page,
    parse_update,
)
from responses_app.api.db import db_call
from responses_app.api.validation import parse_json_body
from responses_app.api.views import api_view, identify, json_response
from responses_app.services import conversations as services


@api_view({"POST"})
async def create_conversation(request: HttpRequest) -> HttpResponse:
    identity = await identify(request)
    metadata, items, references = parse_create(parse_json_body(request.body))

    def work() -> dict[str, Any]:
        resolved = selectors.input_with_references(
            items=items, references=references, owner=identity.owner, param="items"
        )
        conversation = services.conversation_create(owner=identity.owner, metadata=metadata, items=resolved)
        return selectors.conversation_resource(conversation=conversation)

    return json_response(await db_call(work)())


@api_view({"GET", "POST", "DELETE"})
async def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    identity = await identify(request)
    metadata = parse_update(parse_json_body(request.body)) if request.method == "POST" else None

    def work() -> dict[str, Any]:
        conversation = selectors.conversation_get(conversation_id=conversation_id, owner=identity.owner)
        if request.method == "DELETE":
            services.conversation_delete(conversation=conversation)
            return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        if request.method == "POST":
            conversation = services.conversation_update(conversation=conversation, metadata=metadata)
        return selectors.conversation_resource(conversation=conversation)

    return json_response(await db_call(work)())


@api_view({"GET", "POST"})
async def conversation_items(request: HttpRequest, conversation_id: str) -> HttpResponse:
    identity = await identify(request)
    include = parse_include(request.GET)
    if request.method == "POST":
        items, references = parse_add(parse_json_body(request.body))

        def add() -> dict[str, Any]:
            conversation = selectors.conversation_get(conversation_id=conversation_id, owner=identity.owner)
            resolved = selectors.input_with_references(
                items=items, references=references, owner=identity.owner, param="items"
            )
            added = services.conversation_items_add(conversation=conversation, items=resolved)
            data = [selectors.conversation_public_item(item, include) for item in added]
            return {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"],
                "last_id": data[-1]["id"],
                "has_more": False,
            }

        return json_response(await db_call(add)())
    after, limit, order = parse_page(request.GET)

    def page() -> dict[str, Any]:
        conversation = selectors.conversation_get(conversation_id=conversation_id, owner=identity.owner)
        return selectors.conversation_items_page(
            conversation=conversation, after=after, limit=limit, order=order, include=include
        )

    return json_response(await db_call(page)())


@api_view({"GET", "DELETE"})
async def conversation_item(request: HttpRequest, conversation_id: str, item_id: str) -> HttpResponse:
    identity = await identify(request)
    include = parse_include(request.GET)

    def work() -> dict[str, Any]:
        conversation = selectors.conversation_get(conversation_id=conversation_id, owner=identity.owner)
        if request.method == "DELETE":
            selectors.conversation_item_get(conversation=conversation, item_id=item_id)  # 404 when absent
            services.conversation_item_delete(conversation=conversation, item_id=item_id)
            return selectors.conversation_resource(conversation=conversation)
        return selectors.conversation_item_get(conversation=conversation, item_id=item_id, include=include)

    return json_response(await db_call(work)())
