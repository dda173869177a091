"""/api/v1/queue: list, show, hold, release, retry, delete; and /api/v1/capture."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from smtpgate.admin.api import schemas as s
from smtpgate.admin.api.auth import actor, operations
from smtpgate.ops import Actor, Operations
from smtpgate.ops.queue import QueueResult, Selection

router = APIRouter(tags=["queue and capture"])
Who = Annotated[Actor, Depends(actor)]
Ops = Annotated[Operations, Depends(operations)]
MessageId = Annotated[str, Path(max_length=64)]
RFC822: dict[int | str, dict[str, Any]] = {200: {"content": {"message/rfc822": {}}, "description": "The message as received."}}


def _result(result: QueueResult) -> s.QueueResult:
    return s.QueueResult(count=result.count, target=result.selection.target, rule=result.rule,
                         still_held=result.still_held)


def _message(item: object) -> s.QueuedMessage:
    return s.QueuedMessage.model_validate({**item.entry.to_json(), "held": item.held})  # type: ignore[attr-defined]


@router.get("/queue", summary="Queued messages, oldest first")
def list_queue(who: Who, ops: Ops, held: bool = False) -> list[s.QueuedMessage]:
    return [_message(i) for i in ops.queue.list(who, held_only=held)]


@router.post("/queue/hold", summary="Hold every message of a credential or account, and later ones (operator)")
def hold_selection(body: s.QueueSelection, who: Who, ops: Ops) -> s.QueueResult:
    return _result(ops.queue.hold(who, Selection(credential=body.credential, account=body.account)))


@router.post("/queue/release", summary="Release by credential, account or all, dropping hold rules (operator)")
def release_selection(body: s.QueueSelection, who: Who, ops: Ops) -> s.QueueResult:
    return _result(ops.queue.release(who, Selection(credential=body.credential, account=body.account,
                                                    everything=body.all)))


@router.get("/queue/{message_id}", summary="One queued message")
def show_queued(message_id: MessageId, who: Who, ops: Ops) -> s.QueuedMessage:
    return _message(ops.queue.show(who, message_id))


@router.get("/queue/{message_id}/raw", response_class=Response, responses=RFC822,
            summary="The message itself (operator)")
def raw_queued(message_id: MessageId, who: Who, ops: Ops) -> Response:
    return Response(ops.queue.raw(who, message_id), media_type="message/rfc822")


@router.post("/queue/{message_id}/hold", summary="Hold one message (operator)")
def hold(message_id: MessageId, who: Who, ops: Ops) -> s.QueueResult:
    return _result(ops.queue.hold(who, Selection(message_id=message_id)))


@router.post("/queue/{message_id}/release", summary="Release one message (operator)")
def release(message_id: MessageId, who: Who, ops: Ops) -> s.QueueResult:
    return _result(ops.queue.release(who, Selection(message_id=message_id)))


@router.post("/queue/{message_id}/retry", summary="Try now (operator)")
def retry(message_id: MessageId, who: Who, ops: Ops) -> s.QueueResult:
    return _result(ops.queue.retry(who, message_id))


@router.delete("/queue/{message_id}", summary="Delete for good, without a bounce (admin)")
def delete(message_id: MessageId, who: Who, ops: Ops) -> s.QueueResult:
    return _result(ops.queue.delete(who, Selection(message_id=message_id)))


@router.get("/capture", summary="Captured messages, newest first")
def list_capture(who: Who, ops: Ops, limit: Annotated[int | None, Query(ge=1, le=10000)] = None) -> list[s.CapturedMessage]:
    return [s.CapturedMessage.of(m) for m in ops.capture.list(who, limit=limit)]


@router.get("/capture/{message_id}", summary="One captured message's envelope")
def show_capture(message_id: MessageId, who: Who, ops: Ops) -> s.CapturedMessage:
    return s.CapturedMessage.of(ops.capture.get(who, message_id))


@router.get("/capture/{message_id}/raw", response_class=Response, responses=RFC822,
            summary="The captured message itself (operator)")
def raw_capture(message_id: MessageId, who: Who, ops: Ops) -> Response:
    with ops.capture.open_raw(who, message_id) as fh:
        return Response(fh.read(), media_type="message/rfc822")
