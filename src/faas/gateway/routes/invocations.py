"""``/invocations``: the records of calls, sync and async; long-poll, list, cancel.

``GET /invocations/{id}?wait=S`` answers at once for a final record, else
when it becomes final or after S seconds (at most 60), with whatever state
it has then. ``GET /invocations`` pages through records newest first,
filtered by function, status and acceptance time. A caller sees its tenant's
records only (an invoker only those its own key made); any other id is 404. ``DELETE`` cancels a
queued or running call (a running one's sandbox is killed): 409 once final.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from faas.errors import FaasError, ValidationError
from faas.gateway.auth import current_principal
from faas.gateway.context import Gateway
from faas.gateway.responses import OrjsonResponse, failure_response
from faas.gateway.schemas import ErrorBody, InvocationAnswer, InvocationList
from faas.gateway.tenant_scope import owned
from faas.invocations.live import RecordScope
from faas.invocations.service import MAX_WAIT_S
from faas.invocations.views import record_json
from faas.store.invocation_records import DEFAULT_RECORD_PAGE, MAX_RECORD_PAGE, STATUSES
from faas.tenancy.principal import Role

InvocationId = Annotated[str, Path(description="32 hex digits", pattern="^[0-9a-f]{32}$")]
Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_S, allow_inf_nan=False,
                              description="seconds to wait for a final state (long-poll)")]
FunctionFilter = Annotated[str | None, Query(
    alias="function", max_length=128, pattern="^[A-Za-z0-9._-]{1,128}$")]
StatusFilter = Annotated[str | None, Query(alias="status", description=" | ".join(STATUSES))]
Since = Annotated[str | None, Query(
    max_length=40, description="ISO 8601 or epoch seconds: accepted at or after")]
Limit = Annotated[int, Query(ge=1, le=MAX_RECORD_PAGE)]
Cursor = Annotated[str | None, Query(max_length=200)]


def _error(why: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": why}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("malformed id or query"), 404: _error("no such invocation"),
    503: _error("the store is unavailable")}


def parse_since(raw: str) -> int:
    """Microseconds since the epoch from ISO 8601 (naive: UTC) or epoch seconds."""
    try:
        if raw.replace(".", "", 1).isdigit():
            return int(float(raw) * 1_000_000)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1_000_000)
    except (ValueError, OverflowError):
        raise ValidationError("since must be ISO 8601 or epoch seconds") from None


def record_scope() -> RecordScope:
    """The caller's records: its tenant's; an invoker's, only those its key made."""
    principal = current_principal()
    return RecordScope(principal.tenant,
                       principal.key_id if principal.role == Role.INVOKER else None)


def add_routes(api: APIRouter, gateway: Gateway) -> None:
    async def get_invocation(invocation_id: InvocationId, wait: Wait = 0.0) -> Response:
        try:
            record = await gateway.records().get(invocation_id, wait, scope=record_scope())
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse(record_json(record))

    async def list_invocations(function: FunctionFilter = None, status: StatusFilter = None,
                               since: Since = None, limit: Limit = DEFAULT_RECORD_PAGE,
                               cursor: Cursor = None) -> Response:
        try:
            if status is not None and status not in STATUSES:
                raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
            page = await gateway.records().list_records(
                function_id=None if function is None else owned(function), status=status,
                scope=record_scope(),
                since=None if since is None else parse_since(since), limit=limit,
                cursor=cursor)
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse({"items": [record_json(r, output=False) for r in page.items],
                               "next_cursor": page.next_cursor})

    async def cancel_invocation(invocation_id: InvocationId) -> Response:
        try:
            record = await gateway.records().cancel(invocation_id, scope=record_scope())
        except FaasError as exc:
            return failure_response(exc, "")
        return OrjsonResponse(record_json(record))

    tags: list[str | Enum] = ["invocations"]
    api.add_api_route("/invocations/{invocation_id}", get_invocation, methods=["GET"],
                      tags=tags, summary="An invocation's record (long-poll with ?wait=)",
                      response_model=InvocationAnswer, responses=_RESPONSES)
    api.add_api_route("/invocations", list_invocations, methods=["GET"], tags=tags,
                      summary="Invocation records, newest first",
                      response_model=InvocationList, responses=_RESPONSES)
    api.add_api_route("/invocations/{invocation_id}", cancel_invocation, methods=["DELETE"],
                      tags=tags, summary="Cancel a queued or running invocation",
                      response_model=InvocationAnswer, responses={
                          **_RESPONSES, 409: _error("the invocation already ended")})
