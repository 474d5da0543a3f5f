"""The flows every front end calls, in process: create (prewarm), cancel, delete."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from responses_app.errors import ApiError
from responses_app.gateway import limits
from responses_app.gateway.identity import ClientIdentity
from responses_app.models import Response, ResponseEvent, UsageRecord
from responses_app.services import flows
from responses_app.states import ResponseStatus
from responses_app.types import CreateRequest

pytestmark = pytest.mark.django_db(transaction=True)
ALICE = ClientIdentity(owner="key:alice", name="alice")
BOB = ClientIdentity(owner="key:bob", name="bob")


def user_input(text: str) -> list[dict]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]


def stored(*, owner: str, store: bool = True, status: str = ResponseStatus.IN_PROGRESS) -> Response:
    now = time.time()
    return Response.objects.create(
        id=f"resp_flow{int(now * 1e6)}",
        model="mock-1",
        provider="mock",
        owner=owner,
        params={},
        store=store,
        status=status,
        created_at=now,
        heartbeat_at=now,
    )


def test_prewarm_completes_without_a_sample_and_is_finished_like_any_response():
    request = CreateRequest(model="mock-1", params={}, input_items=user_input("remember me"), store=False)

    async def go() -> tuple[flows.Created, list]:
        created = await flows.create(
            request=request, identity=ALICE, request_id="req_prewarm", generate=False
        )
        batch = await created.subscription.get(5)
        await created.subscription.close()
        return created, batch

    created, batch = asyncio.run(go())
    response = Response.objects.get(id=created.response.id)
    assert (response.status, response.store, response.owner) == ("completed", False, "key:alice")
    assert [event_type for _, event_type, _ in batch] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    rows = list(
        ResponseEvent.objects.filter(response=response)
        .order_by("sequence_number")
        .values_list("sequence_number", "type")
    )
    assert rows == [(0, "response.created"), (1, "response.in_progress"), (2, "response.completed")]
    assert json.loads(batch[-1][2])["response"]["output"] == []
    assert UsageRecord.objects.get(response_id=response.id).status == "completed"
    assert response.iterations == 0  # no sample ran


def test_create_refuses_a_model_the_key_may_not_use_before_admission(monkeypatch):
    admitted = []
    monkeypatch.setattr(limits, "admit", lambda **kw: admitted.append(kw))
    narrow = ClientIdentity(owner="key:narrow", allowed_models=("gpt-*",))
    request = CreateRequest(model="mock-1", params={}, input_items=user_input("x"))
    with pytest.raises(ApiError) as refused:
        asyncio.run(flows.create(request=request, identity=narrow, request_id="req_narrow"))
    assert (refused.value.status, refused.value.code) == (403, "model_not_allowed")
    assert admitted == [] and not Response.objects.exists()


def test_a_failed_store_releases_the_admission(monkeypatch):
    released = []

    async def release(**kw):
        released.append(kw)

    monkeypatch.setattr(limits, "release", release)
    request = CreateRequest(
        model="mock-1", params={}, input_items=user_input("x"), previous_response_id="resp_missing"
    )
    with pytest.raises(ApiError) as missing:
        asyncio.run(flows.create(request=request, identity=ALICE, request_id="req_missing"))
    assert missing.value.code == "previous_response_not_found"
    assert released == [{"owner": "key:alice", "ticket": "req_missing"}]


def test_cancel_signals_the_local_loop_and_respects_the_owner(monkeypatch):
    signalled = []
    monkeypatch.setattr(flows, "cancel_everywhere_local", signalled.append)
    response = stored(owner="key:alice")
    with pytest.raises(ApiError) as other:
        asyncio.run(flows.cancel(response_id=response.id, owner="key:bob"))
    assert other.value.status == 404 and signalled == []
    resource = asyncio.run(flows.cancel(response_id=response.id, owner="key:alice"))
    assert resource["status"] == "cancelled" and signalled == [response.id]


def test_an_unstored_response_is_cancelled_only_by_its_connection(monkeypatch):
    monkeypatch.setattr(flows, "cancel_everywhere_local", lambda response_id: None)
    response = stored(owner="key:alice", store=False)
    with pytest.raises(ApiError):
        asyncio.run(flows.cancel(response_id=response.id, owner="key:alice"))
    resource = asyncio.run(flows.cancel(response_id=response.id, owner="key:alice", include_unstored=True))
    assert resource["status"] == "cancelled"


def test_delete_only_the_owners_response():
    response = stored(owner="key:alice", status=ResponseStatus.COMPLETED)
    with pytest.raises(ApiError):
        asyncio.run(flows.delete(response_id=response.id, owner="key:bob"))
    asyncio.run(flows.delete(response_id=response.id, owner="key:alice"))
    assert not Response.objects.filter(id=response.id).exists()


class _HeldInsert:
    """``services.aresponse_insert`` as the PostgreSQL path calls it, noting in ``log`` when its
    statement goes out and when it has committed; the commit waits for ``commit``."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.commit: asyncio.Event | None = None

    async def __call__(self, *, response, items, sending=None) -> None:
        self.commit = self.commit or asyncio.Event()
        if sending is not None:
            sending.set_result(True)
        self.log.append("statement out")
        await asyncio.sleep(0.05)  # the statement in PostgreSQL: the side task runs meanwhile
        self.log.append("committed")


@pytest.mark.parametrize(
    ("extra", "early"),
    [({}, True), ({"idempotency_key": "k1"}, False), ({"previous": True}, False)],
    ids=["first-turn", "idempotency-key", "chain"],
)
def test_a_carried_message_goes_out_while_the_create_is_stored(monkeypatch, extra, early):
    """Celery dispatch on PostgreSQL: a message that carries the response is sent as the create's
    statement goes out (the worker's start waits for its commit on the start lock); with an
    idempotency key, or a chain whose context the worker reads back, only once it is committed."""
    from responses_app.services import flows as flows_module

    log: list[str] = []
    insert = _HeldInsert(log)

    class Bus:
        async def subscribe(self, response_id):
            log.append("subscribed")

            class Subscription:
                async def close(self):
                    log.append("closed")

            return Subscription()

    def prepare(response_id, *, carried=None):
        async def push():
            log.append("pushed carrying" if carried else "pushed")

        return push

    previous = stored(owner="key:alice", status=ResponseStatus.COMPLETED) if extra.get("previous") else None
    monkeypatch.setattr(flows_module, "dispatch_mode", lambda: "celery")
    monkeypatch.setattr(flows_module.pg_async, "available", lambda alias="default": True)
    monkeypatch.setattr(flows_module.services, "aresponse_insert", insert)
    monkeypatch.setattr(flows_module, "get_bus", lambda: Bus())
    monkeypatch.setattr(flows_module, "prepare_dispatch", prepare)
    request = CreateRequest(
        model="mock-1",
        params={},
        input_items=user_input("hi"),
        stream=True,
        previous_response_id=previous.id if previous else None,
    )

    async def go() -> None:
        await flows.create(
            request=request,
            identity=ALICE,
            request_id="req_early",
            idempotency_key=extra.get("idempotency_key", ""),
        )

    asyncio.run(go())
    if early:
        assert log == ["statement out", "subscribed", "pushed carrying", "committed"]
    else:
        assert log.index("committed") < log.index(next(e for e in log if e.startswith("pushed")))
