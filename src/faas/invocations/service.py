"""Invocation records and asynchronous calls for the gateway: one object per server.

``await Invocations.open(settings, functions, orchestrator)`` recovers what a
dead server left running (back to the queue while attempts remain, else
``error``), then starts the record writer, the async dispatcher, the
retention pruner and the callback sender. ``stop_claiming()`` is the first
step of a graceful stop (SIGTERM: queued calls stay queued for the next
start); ``close()`` waits for the runs in flight to be recorded and writes
what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from typing import Any

import orjson

from faas.config import Settings
from faas.errors import Conflict, FaasError, NotFound, ShuttingDown
from faas.functions import Functions
from faas.invocations.callbacks import CallbackSender, DueCallback, load_callback_key
from faas.invocations.codec import encode_call
from faas.invocations.dispatcher import Dispatcher, SecretSource
from faas.invocations.enqueuer import Enqueuer
from faas.invocations.live import LiveCall, LiveCalls, RecordScope
from faas.invocations.outcome import from_error, from_result
from faas.invocations.owner import is_gone, this_owner
from faas.invocations.views import record_json
from faas.invocations.writer import RecordWriter
from faas.models import InvocationResult, InvokeRequest
from faas.orchestrator import Orchestrator
from faas.store import FunctionVersion
from faas.store.invocation_records import (
    CANCELLED,
    QUEUED,
    RUNNING,
    InvocationPage,
    InvocationRecord,
    Outcome,
    decode_record_cursor,
    encode_record_cursor,
    now_us,
)
from faas.store.invocation_store import SqlInvocations
from faas.tenancy.principal import tenant_of

log = logging.getLogger("faas.invocations")
#: Attempts of an async call whose function names none (sync calls: 1).
DEFAULT_ASYNC_ATTEMPTS = 3
IDEMPOTENCY_TTL_US = 24 * 3600 * 1_000_000
#: Longest ``?wait=`` of ``GET /invocations/{id}``.
MAX_WAIT_S = 60.0
#: How often a long-poll looks at the store (a call finished by another server).
WAIT_POLL_S = 0.5
RESTARTED = "the platform restarted while the invocation ran"


def new_invocation_id() -> str:
    return uuid.uuid4().hex


class Invocations:
    def __init__(self, settings: Settings, functions: Functions, orchestrator: Orchestrator,
                 secrets: SecretSource | None = None) -> None:
        self.settings = settings.invocations
        self.store: SqlInvocations = functions.store.invocations
        self.functions = functions
        self.owner = this_owner()
        self.live = LiveCalls()
        self.writer = RecordWriter(self.store, self._written)
        self.dispatcher = Dispatcher(self.store, orchestrator, functions, self.writer,
                                     self.live, self.owner, self.settings.record_output_bytes,
                                     self._ended, secrets)
        self._orchestrator = orchestrator
        self.enqueuer = Enqueuer(self.store, key_ttl_us=IDEMPOTENCY_TTL_US,
                                 max_queued=self.settings.max_async_queue,
                                 max_queued_bytes=self.settings.max_async_queue_bytes)
        self._pruner: asyncio.Task[None] | None = None
        self.callbacks: CallbackSender | None = None

    @classmethod
    async def open(cls, settings: Settings, functions: Functions,
                   orchestrator: Orchestrator,
                   secrets: SecretSource | None = None) -> Invocations:
        """Recover what a dead server left, start the background work. ``secrets``: where
        an async call's secrets are read when it runs (None: such a call fails)."""
        self = cls(settings, functions, orchestrator, secrets)
        recovered = await self.store.recover(is_gone, RESTARTED)
        if recovered.requeued or recovered.failed:
            log.warning("recovered calls a dead server left running: %d queued again, %d "
                        "marked error", len(recovered.requeued), len(recovered.failed))
        key = await asyncio.to_thread(load_callback_key, settings.data_dir,
                                      self.settings.callback_key)
        self.callbacks = CallbackSender(
            CallbackRecords(self.store), key, retry_s=self.settings.callback_retry_s,
            allow_private=self.settings.callback_allow_private)
        self.callbacks.start()
        self.writer.start()
        self.enqueuer.start()
        self.dispatcher.start()
        orchestrator.admission.released = self.dispatcher.wake
        self._pruner = asyncio.ensure_future(self._prune_loop())
        return self

    # -- async calls -----------------------------------------------------------------

    async def accept(self, function_id: str, request: InvokeRequest, request_id: str,
                     deployed: FunctionVersion | None, *, callback_url: str | None = None,
                     idempotency_key: str | None = None,
                     caller: str | None = None,
                     tenant_max_queued: int | None = None) -> tuple[str, bool]:
        """Queue an async call (durably); ``(id, True)``, or the first call's id and False
        for a repeated Idempotency-Key. ``AdmissionRejected`` when the queue is full, or
        when the tenant of ``function_id`` has ``tenant_max_queued`` calls queued."""
        if not self.dispatcher.claiming or not self._orchestrator.accepting:
            raise ShuttingDown("server is shutting down")
        spec = deployed.spec if deployed is not None else None
        record = InvocationRecord(
            id=new_invocation_id(), request_id=request_id, function_id=function_id,
            version=deployed.version if deployed is not None else None, mode="async",
            status=QUEUED, accepted_at=now_us(),
            max_attempts=(spec.max_attempts if spec and spec.max_attempts
                          else DEFAULT_ASYNC_ATTEMPTS),
            retry_timeouts=bool(spec and spec.retry_timeouts),
            retry_failures=bool(spec and spec.retry_failures),
            concurrency_cap=spec.max_concurrency if spec else None,
            output_encoding=request.output_encoding,
            request=encode_call(request, spec.bundle if spec else None,
                                spec.secrets if spec else ()),
            callback_url=callback_url, tenant=tenant_of(function_id), caller=caller)
        invocation_id, created = await self.enqueuer.submit(record, idempotency_key,
                                                            tenant_max_queued)
        if created:
            self.dispatcher.queued()
        return invocation_id, created

    # -- sync calls ------------------------------------------------------------------

    def sync_started(self, function_id: str, deployed: FunctionVersion | None,
                     request_id: str, accepted_at: int,
                     task: asyncio.Future[Any], caller: str | None = None) -> LiveCall:
        spec = deployed.spec if deployed is not None else None
        record = InvocationRecord(
            id=new_invocation_id(), request_id=request_id, function_id=function_id,
            version=deployed.version if deployed is not None else None, mode="sync",
            status=RUNNING, accepted_at=accepted_at, started_at=accepted_at, attempts=1,
            max_attempts=1, concurrency_cap=spec.max_concurrency if spec else None,
            owner=self.owner, tenant=tenant_of(function_id), caller=caller)
        return self.live.add(record, task)

    def sync_ended(self, call: LiveCall, result: InvocationResult | None,
                   exc: FaasError | None) -> None:
        """Record how a sync call ended (written in the background): with ``result``, with
        ``exc``, or neither (cancelled: by a DELETE, or its client went away)."""
        cap = self.settings.record_output_bytes
        if exc is not None and not call.cancelled:
            outcome = from_error(exc, cap, call.record.request_id)
        elif result is not None:
            outcome = from_result(result, cap)
        else:
            # A DELETE ends the caller with InvocationCancelled: the record says cancelled.
            why = ("cancelled by a DELETE of the invocation" if call.cancelled
                   else "cancelled: the client went away")
            outcome = Outcome(status=CANCELLED, finished_at=now_us(), error=why)
        fields = {name: getattr(outcome, name) for name in outcome.__slots__}
        started = call.record.accepted_at
        if outcome.duration_ms is not None:
            started = max(started, outcome.finished_at - int(outcome.duration_ms * 1000))
        record = dataclasses.replace(call.record, **fields, started_at=started, owner=None)
        call.record = record
        if not self.writer.insert(record):
            self.live.settled([record.id])

    def _written(self, inserts: list[InvocationRecord]) -> None:
        if inserts:
            self.live.settled([record.id for record in inserts])
            if any(record.callback_url for record in inserts):
                self._ended()

    def _ended(self) -> None:
        """A call's outcome is in the store (its callback may be due)."""
        if self.callbacks is not None:
            self.callbacks.wake()

    # -- records ---------------------------------------------------------------------

    async def get(self, invocation_id: str, wait_s: float = 0.0,
                  scope: RecordScope | None = None) -> InvocationRecord:
        """The record; with ``wait_s``, once it is final or ``wait_s`` has passed.
        Outside ``scope`` a record is ``NotFound``, exactly like an unknown id."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait_s, 0.0), MAX_WAIT_S)
        while True:
            record = self.live.get(invocation_id)
            if record is None:
                record = await self.store.get(invocation_id)
            if scope is not None and not scope.sees(record):
                raise NotFound(f"no invocation {invocation_id}")
            remaining = deadline - loop.time()
            if record.final or remaining <= 0:
                return record
            await self.live.wait(invocation_id, min(remaining, WAIT_POLL_S))

    async def list_records(self, *, function_id: str | None = None, status: str | None = None,
                   since: int | None = None, limit: int = 50, cursor: str | None = None,
                   scope: RecordScope | None = None) -> InvocationPage:
        # Taken before the query: a sync call whose record is written while the query
        # runs leaves the live calls then, and must still be found in one or the other.
        running = [call for call in self.live.calls.values()
                   if scope is None or scope.sees(call.record)]
        page = await self.store.list_records(
            function_id=function_id, status=status, since=since, limit=limit, cursor=cursor,
            tenant=None if scope is None else scope.tenant,
            caller=None if scope is None else scope.caller)
        return self._with_live_sync(page, running, function_id, status, since, limit, cursor)

    def _with_live_sync(self, page: InvocationPage, running: list[LiveCall],
                        function_id: str | None, status: str | None, since: int | None,
                        limit: int, cursor: str | None) -> InvocationPage:
        """``page`` with the sync calls ``running`` here (not in the store until they end),
        so a running sync call can be found, and cancelled, by its id."""
        after = decode_record_cursor(cursor) if cursor is not None else None
        stored = {record.id for record in page.items}
        live = [record for call in running
                if (record := call.record).mode == "sync" and record.id not in stored
                and (function_id is None or record.function_id == function_id)
                and (status is None or record.status == status)
                and (since is None or record.accepted_at >= since)
                and (after is None or (record.accepted_at, record.id) < after)]
        if not live:
            return page
        merged = sorted([*page.items, *live], key=lambda r: (r.accepted_at, r.id),
                        reverse=True)
        items = tuple(merged[:limit])
        more = len(merged) > limit or page.next_cursor is not None
        return InvocationPage(items, encode_record_cursor(items[-1].accepted_at, items[-1].id)
                              if more else None)

    async def cancel(self, invocation_id: str,
                     scope: RecordScope | None = None) -> InvocationRecord:
        """Cancel a queued or running call (its sandbox is killed); ``Conflict`` if final."""
        if scope is not None:
            await self.get(invocation_id, scope=scope)
        live = self.live.calls.get(invocation_id)
        if live is not None and live.record.mode == "sync":
            if live.record.final:
                raise Conflict(f"the invocation already ended ({live.record.status})")
            cancelled = dataclasses.replace(live.record, status=CANCELLED, finished_at=now_us(),
                                            error="cancelled by a DELETE of the invocation")
            self.live.cancel(invocation_id, cancelled)
            return cancelled
        record, was = await self.store.cancel(invocation_id)
        if was == RUNNING:
            self.live.cancel(invocation_id, record)
        self._ended()
        return record

    # -- lifecycle -------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        every = min(max(self.settings.record_ttl_s / 4, 1.0), 300.0)
        while True:
            await asyncio.sleep(every)
            try:
                cutoff = now_us() - int(self.settings.record_ttl_s * 1_000_000)
                removed = await self.store.prune(cutoff)
                if removed:
                    log.info("pruned %d invocation records past their retention", removed)
            except FaasError as exc:
                log.warning("could not prune invocation records: %s", exc)

    def stop_claiming(self) -> None:
        self.dispatcher.stop_claiming()

    async def close(self, grace_s: float) -> None:
        """Wait for the async runs (the orchestrator's drain bounds them), write what is
        pending, stop the background tasks."""
        await self.enqueuer.close()
        await self.dispatcher.close(grace_s + 15)
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await self.writer.close()
        if self.callbacks is not None:
            await self.callbacks.close()



class CallbackRecords:
    """The callback sender's view of the store: due records rendered as the API shows them."""

    def __init__(self, store: SqlInvocations) -> None:
        self._store = store

    async def due_callbacks(self, now_us: int, limit: int) -> list[DueCallback]:
        return [DueCallback(r.id, r.callback_url or "", orjson.dumps(record_json(r)),
                            r.callback_attempts, r.finished_at or now_us)
                for r in await self._store.due_callbacks(now_us, limit)]

    async def callback_outcome(self, invocation_id: str, *, state: str, attempts: int,
                               next_at_us: int | None, error: str | None,
                               delivered_at_us: int | None) -> None:
        await self._store.callback_outcome(invocation_id, state=state, attempts=attempts,
                                           next_at=next_at_us, error=error,
                                           delivered_at=delivered_at_us)
