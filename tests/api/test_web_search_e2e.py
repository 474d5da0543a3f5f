"""OpenAI's ``web_search`` tool over Anthropic (its web search server tool) and Gemini (Grounding
with Google Search), asked by the official ``openai`` Python SDK of the running server, streamed
and not: the SDK parses the ``web_search_call`` items (``ResponseFunctionWebSearch``), their
``response.web_search_call.*`` events and the ``url_citation`` annotations; continuing the chain
sends Anthropic its search blocks back byte for byte.

No recording of a search answer exists in ``tests/fixtures``: the upstream answers here are
**constructed** from each provider's documented wire format, not recorded:

* Anthropic — https://platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool
  (the response example, the streaming example, the error shape) and
  https://platform.claude.com/docs/en/build-with-claude/citations (``citations_delta``);
* Gemini — https://ai.google.dev/gemini-api/docs/google-search (``groundingMetadata``) and
  https://ai.google.dev/api/generate-content#Segment (segment offsets are UTF-8 bytes into the part).

The Open Responses document defines neither ``web_search_call`` items nor their events: those
are checked against the SDK's own types; everything else against the document.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.spec import EVENT_SCHEMAS, assert_valid_event, assert_valid_response
from tests.support.upstream import Reply

openai = pytest.importorskip("openai")
from openai.types.responses import (  # noqa: E402
    ResponseFunctionWebSearch,
    ResponseOutputMessage,
    ResponseWebSearchCallCompletedEvent,
    ResponseWebSearchCallInProgressEvent,
    ResponseWebSearchCallSearchingEvent,
)

CLAUDE = "claude-sonnet-4-5"
GEMINI = "gemini-2.5-flash"
SEARCH = {"type": "web_search"}
SOURCES = "web_search_call.action.sources"
modes = pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])

# --------------------------------------------------------------------------- Anthropic's answer

QUERY = "claude shannon birth date"
RESULTS = [
    {
        "type": "web_search_result",
        "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
        "title": "Claude Shannon - Wikipedia",
        "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y0NvbnRlbnQ=",
        "page_age": "April 30, 2025",
    },
    {
        "type": "web_search_result",
        "url": "https://www.britannica.com/biography/Claude-Shannon",
        "title": "Claude Shannon | Britannica",
        "encrypted_content": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNmBritannicaQ29udGVudA==",
        "page_age": "March 1, 2025",
    },
]
INTRO = "I'll search for when Claude Shannon was born."
LEAD = "Based on the search results, "
CLAIM = "Claude Shannon was born on April 30, 1916, in Petoskey, Michigan"
CITATION = {
    "type": "web_search_result_location",
    "url": RESULTS[0]["url"],
    "title": RESULTS[0]["title"],
    "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm..",
    "cited_text": "Claude Elwood Shannon (April 30, 1916 – February 24, 2001) was an American mathematician...",
}


def anthropic_blocks(tool_id: str = "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE", error: str | None = None) -> list:
    """The documented response's content: text, the search, its results (or an error), the answer."""
    result: Any = {"type": "web_search_tool_result_error", "error_code": error} if error else RESULTS
    return [
        {"type": "text", "text": INTRO},
        {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": QUERY}},
        {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": result},
        {"type": "text", "text": LEAD},
        {"type": "text", "text": CLAIM, "citations": [] if error else [CITATION]},
    ]


def anthropic_answer(blocks: list[dict], *, stream: bool, stop: str = "end_turn") -> Reply:
    usage = {"input_tokens": 6039, "output_tokens": 931, "server_tool_use": {"web_search_requests": 1}}
    message = {
        "id": "msg_a930390d3a",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not stream:
        return Reply.json(message)
    events: list[tuple[str, dict]] = [
        (
            "message_start",
            {"type": "message_start", "message": {**message, "content": [], "stop_reason": None}},
        )
    ]

    def event(name: str, **data: Any) -> None:
        events.append((name, {"type": name, **data}))

    for index, block in enumerate(blocks):
        if block["type"] == "text":
            event("content_block_start", index=index, content_block={"type": "text", "text": ""})
            for citation in block.get("citations") or []:
                delta = {"type": "citations_delta", "citation": citation}
                event("content_block_delta", index=index, delta=delta)
            text = block["text"]
            for piece in (text[:10], text[10:]):
                event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        elif block["type"] == "server_tool_use":
            start = {k: v for k, v in block.items() if k != "input"}  # as the streaming example has it
            event("content_block_start", index=index, content_block=start)
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            event("content_block_delta", index=index, delta=delta)
        else:
            event("content_block_start", index=index, content_block=block)
        event("content_block_stop", index=index)
    event("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage=usage)
    event("message_stop")
    return Reply.sse(events)


# --------------------------------------------------------------------------- Gemini's answer

# Multi-byte characters before and inside the cited segments: their offsets are bytes.
FIRST = "España won Euro 2024, defeating England 2–1 in the final."
SECOND = "This victory marks Spain’s record fourth European title."
ANSWER = f"{FIRST} {SECOND}"
QUERIES = ["UEFA Euro 2024 winner", "who won euro 2024"]
CHUNKS = [
    {
        "web": {
            "uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/aljazeera",
            "title": "aljazeera.com",
        }
    },
    {
        "web": {
            "uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/uefa",
            "title": "uefa.com",
        }
    },
]


def byte_span(segment: str) -> tuple[int, int]:
    start = ANSWER.encode().index(segment.encode())
    return start, start + len(segment.encode())


def grounding() -> dict:
    first, second = byte_span(FIRST), byte_span(SECOND)
    return {
        "webSearchQueries": QUERIES,
        "searchEntryPoint": {"renderedContent": "<!-- HTML and CSS for the search widget -->"},
        "groundingChunks": CHUNKS,
        "groundingSupports": [
            {
                "segment": {"startIndex": first[0], "endIndex": first[1], "text": FIRST},
                "groundingChunkIndices": [0],
            },
            # No quoted text: only the byte offsets say where it is.
            {"segment": {"startIndex": second[0], "endIndex": second[1]}, "groundingChunkIndices": [0, 1]},
        ],
    }


def gemini_answer(*, stream: bool) -> Reply:
    def frame(text: str, last: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
            candidate["groundingMetadata"] = grounding()
        return {
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 30, "totalTokenCount": 42},
            "modelVersion": GEMINI,
        }

    if not stream:
        return Reply.json(frame(ANSWER, True))
    pieces = [ANSWER[i : i + 16] for i in range(0, len(ANSWER), 16)]
    return Reply.sse([(None, frame(p, i == len(pieces) - 1)) for i, p in enumerate(pieces)], crlf=True)


# --------------------------------------------------------------------------- asking through the SDK


def check_resource(resource: dict) -> None:
    """Valid against the document but for what it lacks (``web_search_call`` items, tools other
    than functions), which the SDK's own types check."""
    for item in resource["output"]:
        if item["type"] == "web_search_call":
            ResponseFunctionWebSearch.model_validate(item)
    assert_valid_response(
        {
            **resource,
            "tools": [t for t in resource["tools"] if t["type"] == "function"],
            "output": [i for i in resource["output"] if i["type"] != "web_search_call"],
        }
    )


SEARCH_EVENTS = {
    "response.web_search_call.in_progress": ResponseWebSearchCallInProgressEvent,
    "response.web_search_call.searching": ResponseWebSearchCallSearchingEvent,
    "response.web_search_call.completed": ResponseWebSearchCallCompletedEvent,
}


def ask(client: Any, streamed: bool, **body: Any) -> tuple[Any, list[Any]]:
    """The final response (the SDK's type) and, streamed, the SDK's events, every one validated."""
    if not streamed:
        response = client.responses.create(**body)
        check_resource(response.to_dict())
        return response, []
    events = list(client.responses.create(stream=True, **body))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        data = event.to_dict()
        if "response" in data:
            check_resource(data["response"])
        elif event.type in SEARCH_EVENTS:
            assert isinstance(event, SEARCH_EVENTS[event.type])
            SEARCH_EVENTS[event.type].model_validate(data)
        elif (data.get("item") or {}).get("type") == "web_search_call":
            assert isinstance(event.item, ResponseFunctionWebSearch)
        else:
            assert event.type in EVENT_SCHEMAS, event.type
            assert_valid_event(data)
    assert events[-1].type == "response.completed"
    return events[-1].response, events


def search_events(events: list[Any], item_id: str) -> list[str]:
    return [
        e.type
        for e in events
        if getattr(e, "item_id", None) == item_id or getattr(getattr(e, "item", None), "id", None) == item_id
    ]


LIFECYCLE = [
    "response.output_item.added",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
    "response.web_search_call.completed",
    "response.output_item.done",
]


# --------------------------------------------------------------------------- Anthropic


@modes
def test_anthropic_web_search_comes_back_as_openai_items(openai_client, upstream, streamed):
    upstream.queue(anthropic_answer(anthropic_blocks(), stream=streamed))
    tool = {
        "type": "web_search",
        "filters": {"allowed_domains": ["en.wikipedia.org", "https://www.britannica.com/"]},
        "user_location": {"type": "approximate", "country": "US", "city": "Petoskey"},
    }
    response, events = ask(
        openai_client,
        streamed,
        model=CLAUDE,
        input="When was Claude Shannon born?",
        tools=[tool],
        include=[SOURCES],
        max_tool_calls=3,
    )
    assert response.status == "completed"
    assert upstream.requests[0].json()["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "max_uses": 3,
            "allowed_domains": ["en.wikipedia.org", "www.britannica.com"],
            "user_location": {"type": "approximate", "city": "Petoskey", "country": "US"},
        }
    ]
    assert [i.type for i in response.output] == ["message", "web_search_call", "message"]
    intro, search, answer = response.output
    assert isinstance(search, ResponseFunctionWebSearch) and search.status == "completed"
    assert search.id.startswith("ws_") and search.action.type == "search" and search.action.query == QUERY
    assert [s.url for s in search.action.sources] == [r["url"] for r in RESULTS]
    assert isinstance(answer, ResponseOutputMessage) and intro.content[0].text == INTRO
    [text] = answer.content
    assert text.text == LEAD + CLAIM
    [citation] = text.annotations
    assert citation.type == "url_citation"
    assert (citation.url, citation.title) == (CITATION["url"], CITATION["title"])
    assert text.text[citation.start_index : citation.end_index] == CLAIM, "the cited block's text"
    if streamed:
        assert search_events(events, search.id) == LIFECYCLE
        [added] = [e for e in events if e.type == "response.output_text.annotation.added"]
        assert (added.item_id, added.annotation_index, added.content_index) == (answer.id, 0, 0)
        assert added.annotation.to_dict() == citation.to_dict()


@modes
def test_anthropic_search_blocks_go_back_when_the_chain_continues(openai_client, upstream, streamed):
    blocks = anthropic_blocks()
    upstream.queue(anthropic_answer(blocks, stream=streamed), anthropic_answer(blocks[-1:], stream=False))
    first, _ = ask(openai_client, streamed, model=CLAUDE, input="When was Shannon born?", tools=[SEARCH])
    assert [s for s in (first.output[1].action.sources or [])] == [], "sources only when include asks"
    ask(openai_client, False, model=CLAUDE, previous_response_id=first.id, input="And where?", tools=[SEARCH])
    [user, assistant, again] = upstream.requests[1].json()["messages"]
    assert (user["role"], assistant["role"], again["role"]) == ("user", "assistant", "user")
    sent = assistant["content"]
    assert [b["type"] for b in sent] == ["text", "server_tool_use", "web_search_tool_result", "text"]
    assert sent[1:3] == blocks[1:3], "the search and its encrypted results, byte for byte"


def test_store_false_clients_carry_the_search_sealed(openai_client, upstream):
    """Codex-style: ``store: false`` and ``include: ["reasoning.encrypted_content"]``; the client
    sends the output back and the blocks return (sealed on a carrier reasoning item); without the
    include the search is dropped cleanly and its text stays."""
    blocks = anthropic_blocks()
    body = {"model": CLAUDE, "tools": [SEARCH], "store": False}
    for include, expected in (
        (
            ["reasoning.encrypted_content"],
            ["text", "server_tool_use", "web_search_tool_result", "text"],
        ),
        ([], ["text", "text"]),
    ):
        upstream.requests.clear()
        upstream.queue(anthropic_answer(blocks, stream=False), anthropic_answer(blocks[-1:], stream=False))
        first, _ = ask(openai_client, False, input="When was Shannon born?", include=include, **body)
        kinds = [i.type for i in first.output]
        assert kinds == ["message", "web_search_call", "message"] + (["reasoning"] if include else [])
        history = [{"role": "user", "content": "When was Shannon born?"}]
        history += [i.to_dict() for i in first.output] + [{"role": "user", "content": "And where?"}]
        ask(openai_client, False, input=history, include=include, **body)
        [_, assistant, _] = upstream.requests[1].json()["messages"]
        assert [b["type"] for b in assistant["content"]] == expected
        if include:
            assert assistant["content"][1:3] == blocks[1:3]
            assert "EqgfCioIARgB" not in json.dumps(first.to_dict()), "the results never reach the client"


@modes
def test_a_paused_search_turn_is_sent_back_to_finish(openai_client, upstream, streamed):
    """``pause_turn`` (the documented stop reason of a long search turn): the loop sends the paused
    assistant content back, unchanged, and Anthropic finishes the turn; the client gets one response."""
    blocks = anthropic_blocks()
    upstream.queue(
        anthropic_answer(blocks[:3], stream=streamed, stop="pause_turn"),
        anthropic_answer(blocks[3:], stream=streamed),
    )
    response, _ = ask(openai_client, streamed, model=CLAUDE, input="Shannon?", tools=[SEARCH])
    assert response.status == "completed"
    assert [i.type for i in response.output] == ["message", "web_search_call", "message"]
    assert response.output[2].content[0].text == LEAD + CLAIM
    [user, paused] = upstream.requests[1].json()["messages"]
    assert (user["role"], paused["role"]) == ("user", "assistant")
    assert paused["content"] == blocks[:3], "the paused turn, unchanged"


def test_a_failed_search_is_a_failed_item_and_the_answer_goes_on(openai_client, upstream):
    upstream.queue(anthropic_answer(anthropic_blocks(error="max_uses_exceeded"), stream=True))
    response, events = ask(openai_client, True, model=CLAUDE, input="Shannon?", tools=[SEARCH])
    search = response.output[1]
    assert (search.type, search.status, search.action.query) == ("web_search_call", "failed", QUERY)
    assert "response.web_search_call.completed" not in search_events(events, search.id)
    assert response.output[2].content[0].annotations == []


def test_the_search_moves_to_other_providers_without_its_blocks(openai_client, upstream):
    """Anthropic's search, then Gemini, then OpenAI: neither gets Anthropic's blocks nor its
    ``web_search_call`` item (OpenAI would not know its id); the answer's text goes to both."""
    from tests.support.wire import OpenAIWire

    wire = OpenAIWire()
    upstream.queue(
        anthropic_answer(anthropic_blocks(), stream=False),
        gemini_answer(stream=False),
        wire.text("Done.", stream=False),
    )
    first, _ = ask(openai_client, False, model=CLAUDE, input="Shannon?", tools=[SEARCH])
    second, _ = ask(
        openai_client, False, model=GEMINI, previous_response_id=first.id, input="Euro 2024?", tools=[SEARCH]
    )
    ask(
        openai_client,
        False,
        model=wire.model,
        previous_response_id=second.id,
        input="Thanks.",
        tools=[SEARCH],
    )
    to_gemini, to_openai = upstream.requests[1].json(), upstream.requests[2].json()
    for sent in (to_gemini, to_openai):
        assert "server_tool_use" not in json.dumps(sent) and "EqgfCioIARgB" not in json.dumps(sent)
    assert [c["role"] for c in to_gemini["contents"]] == ["user", "model", "user"]
    assert "web_search_call" not in [i.get("type") for i in to_openai["input"]]
    assert LEAD + CLAIM in json.dumps(to_openai["input"])


# --------------------------------------------------------------------------- Gemini


@modes
def test_gemini_grounding_comes_back_as_openai_items(openai_client, upstream, streamed):
    upstream.queue(gemini_answer(stream=streamed))
    response, events = ask(
        openai_client, streamed, model=GEMINI, input="Who won euro 2024?", tools=[SEARCH], include=[SOURCES]
    )
    sent = upstream.requests[0].json()
    assert sent["tools"] == [{"google_search": {}}] and "toolConfig" not in sent
    kinds = [i.type for i in response.output]
    # A whole body has the grounding before the text; a stream sends it last.
    assert kinds == (["message", "web_search_call"] if streamed else ["web_search_call", "message"])
    search = next(i for i in response.output if i.type == "web_search_call")
    message = next(i for i in response.output if i.type == "message")
    assert search.status == "completed"
    assert (search.action.query, search.action.queries) == (QUERIES[0], QUERIES)
    assert [s.url for s in search.action.sources] == [c["web"]["uri"] for c in CHUNKS]
    [text] = message.content
    assert text.text == ANSWER
    spans = [(a.url, text.text[a.start_index : a.end_index]) for a in text.annotations]
    assert spans == [
        (CHUNKS[0]["web"]["uri"], FIRST),
        (CHUNKS[0]["web"]["uri"], SECOND),
        (CHUNKS[1]["web"]["uri"], SECOND),
    ]
    assert text.annotations[1].title == "aljazeera.com"
    if streamed:
        assert search_events(events, search.id) == LIFECYCLE
        added = [e for e in events if e.type == "response.output_text.annotation.added"]
        assert [e.annotation_index for e in added] == [0, 1, 2]


def test_gemini_cannot_limit_search_to_domains(openai_client, upstream):
    tool = {"type": "web_search", "filters": {"allowed_domains": ["uefa.com"]}}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(model=GEMINI, input="Euro 2024?", tools=[tool])
    assert (caught.value.body["code"], caught.value.body["param"]) == ("unsupported_parameter", "tools")
    assert upstream.requests == [], "nothing was sent"


def test_gemini_history_with_a_search_is_sent_without_it(openai_client, upstream):
    upstream.queue(gemini_answer(stream=False), gemini_answer(stream=False))
    first, _ = ask(openai_client, False, model=GEMINI, input="Euro 2024?", tools=[SEARCH])
    history = [{"role": "user", "content": "Euro 2024?"}, *[i.to_dict() for i in first.output]]
    ask(
        openai_client,
        False,
        model=GEMINI,
        input=[*history, {"role": "user", "content": "Sure?"}],
        tools=[SEARCH],
    )
    sent = upstream.requests[1].json()
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["contents"][1]["parts"] == [{"text": ANSWER}]


# --------------------------------------------------------------------------- OpenAI (passed through)


@modes
def test_openai_search_and_citations_are_relayed(openai_client, upstream, streamed):
    """OpenAI runs its own search: its ``web_search_call`` is relayed as it is (streamed with the
    ``response.web_search_call.*`` events) and its ``url_citation`` annotations reach the client."""
    from tests.support.wire import OpenAIWire

    wire = OpenAIWire()
    search = {
        "id": "ws_0123456789abcdef",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": QUERY},
    }
    message = wire._message(LEAD + CLAIM)
    citation = {
        "type": "url_citation",
        "url": RESULTS[0]["url"],
        "title": RESULTS[0]["title"],
        "start_index": len(LEAD),
        "end_index": len(LEAD + CLAIM),
    }
    message["content"][0]["annotations"] = [citation]
    if streamed:
        text = message["content"][0]["text"]
        deltas = [
            {"type": "response.output_text.delta", "content_index": 0, "delta": text[:12], "logprobs": []},
            {"type": "response.output_text.delta", "content_index": 0, "delta": text[12:], "logprobs": []},
            {
                "type": "response.output_text.annotation.added",
                "content_index": 0,
                "annotation_index": 0,
                "annotation": citation,
            },
        ]
        upstream.queue(wire._stream([(search, []), (message, deltas)]))
    else:
        upstream.queue(Reply.json(wire._response([search, message])))
    response, events = ask(openai_client, streamed, model=wire.model, input="Shannon?", tools=[SEARCH])
    assert upstream.requests[0].json()["tools"] == [SEARCH]
    relayed, answer = response.output
    assert relayed.to_dict() == search
    assert [a.to_dict() for a in answer.content[0].annotations] == [citation]
    if streamed:
        assert search_events(events, search["id"]) == LIFECYCLE


# --------------------------------------------------------------------------- the Agents SDK


@pytest.mark.parametrize("model", [CLAUDE, GEMINI])
@modes
def test_agents_sdk_web_search_tool(server, upstream, model, streamed):
    """The OpenAI Agents SDK's ``WebSearchTool``, unchanged, over Anthropic and Gemini."""
    import asyncio

    from tests.clients.harness import require_python

    require_python("agents", "openai-agents")
    from agents import Agent, OpenAIResponsesModel, Runner, WebSearchTool, set_tracing_disabled
    from agents.items import MessageOutputItem, ToolCallItem

    set_tracing_disabled(True)  # traces would go to OpenAI's platform
    if model == CLAUDE:
        upstream.queue(anthropic_answer(anthropic_blocks(), stream=streamed))
        expected, url = LEAD + CLAIM, CITATION["url"]
    else:
        upstream.queue(gemini_answer(stream=streamed))
        expected, url = ANSWER, CHUNKS[0]["web"]["uri"]

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0)
        agent = Agent(
            name="searcher",
            instructions="Search the web.",
            model=OpenAIResponsesModel(model=model, openai_client=client),
            tools=[WebSearchTool(user_location={"type": "approximate", "country": "US"})],
        )
        if not streamed:
            return await Runner.run(agent, "When was it?", max_turns=2)
        result = Runner.run_streamed(agent, "When was it?", max_turns=2)
        async for _ in result.stream_events():
            pass
        return result

    result = asyncio.run(run())
    assert result.final_output == expected
    [search] = [i.raw_item for i in result.new_items if isinstance(i, ToolCallItem)]
    assert isinstance(search, ResponseFunctionWebSearch) and search.status == "completed"
    messages = [i.raw_item for i in result.new_items if isinstance(i, MessageOutputItem)]
    assert url in [a.url for m in messages for part in m.content for a in part.annotations]
    if model == CLAUDE:
        assert upstream.requests[0].json()["tools"][0]["user_location"] == {
            "type": "approximate",
            "country": "US",
        }


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"filters": "x.example"}, "tools[0].filters"),
        ({"filters": {"allowed_domains": "x.example"}}, "tools[0].filters.allowed_domains"),
        ({"filters": {"allowed_domains": [1]}}, "tools[0].filters.allowed_domains[0]"),
        ({"user_location": ["US"]}, "tools[0].user_location"),
        ({"user_location": {"country": 1}}, "tools[0].user_location.country"),
        ({"search_context_size": "huge"}, "tools[0].search_context_size"),
        ({"external_web_access": "no"}, "tools[0].external_web_access"),
    ],
)
def test_web_search_options_are_validated(tool, param):
    """What adapters translate is checked first: a 400 naming the field, never a 500."""
    from responses_app.api.validation import validate_create
    from responses_app.errors import ApiError

    with pytest.raises(ApiError) as caught:
        validate_create({"model": CLAUDE, "input": "x", "tools": [{"type": "web_search", **tool}]})
    assert (caught.value.status, caught.value.param) == (400, param)
    validate_create(
        {
            "model": CLAUDE,
            "input": "x",
            "tools": [{"type": "web_search_preview", "search_context_size": "low"}],
        }
    )
