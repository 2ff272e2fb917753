"""The async worker loop: claim queued calls while there is room, run each, record it.

Room is the orchestrator's: no more claimed calls than free admission slots
(so async calls never crowd sync callers into the admission queue), and no
call of a function already at its ``max_concurrency`` (counting its sync
calls too). Claims take the oldest first (arrival order). The loop is woken
when a call is accepted here, when an admission slot frees, and polls every
``POLL_S`` for calls accepted elsewhere or whose retry backoff has passed.

A run ends in one of: an outcome written over the running row (through the
batching writer), a requeue for another attempt (per the retry policy), or
nothing when a DELETE cancelled it (the row already says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from faas.errors import FaasError, ValidationError
from faas.functions import Functions, outcome_of
from faas.invocations.codec import decode_call
from faas.invocations.live import LiveCalls
from faas.invocations.outcome import backoff_us, from_error, from_result, should_retry
from faas.invocations.writer import RecordWriter
from faas.logs import request_id_var
from faas.models import FunctionBundle, InvocationResult
from faas.orchestrator import Orchestrator
from faas.secrets.values import Secret
from faas.store.invocation_records import InvocationRecord, now_us
from faas.store.invocation_store import SqlInvocations

#: The values of a call's secrets: (qualified function id, names) -> secrets.
SecretSource = Callable[[str, tuple[str, ...]], Awaitable[tuple[Secret, ...]]]

log = logging.getLogger("faas.invocations")
POLL_S = 1.0
#: After a claim that filled every free slot, look again this soon (more may be queued).
BUSY_POLL_S = 0.05


class _NotStarted(Exception):
    """The server stopped accepting between the claim and the start of the run."""


class Dispatcher:
    def __init__(self, store: SqlInvocations, orchestrator: Orchestrator, functions: Functions,
                 writer: RecordWriter, live: LiveCalls, owner: str, output_cap: int,
                 ended: Callable[[], None], secrets: SecretSource | None = None) -> None:
        self._store = store
        self._orch = orchestrator
        self._functions = functions
        self._writer = writer
        self._live = live
        self._owner = owner
        self._cap = output_cap
        self._ended = ended
        self._secrets = secrets
        self._wake = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.claiming = True
        #: False once a claim found nothing more to take (and no gated call could have
        #: been skipped); set again by an accept here, a poll, an async run ending. Spares
        #: every sync call's end (an admission slot freed) a claim transaction.
        self._maybe_queued = True

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    def wake(self) -> None:
        self._wake.set()

    def queued(self) -> None:
        """A call was queued here: claim it."""
        self._maybe_queued = True
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._runs)

    def _room(self) -> int:
        admission = self._orch.admission
        return min(admission.limit - admission.running - admission.waiting,
                   admission.limit - len(self._runs))

    async def _loop(self) -> None:
        while self.claiming:
            pause = POLL_S
            try:
                room = self._room()
                if room > 0 and self._orch.accepting and self._maybe_queued:
                    busy, running = self._functions.gates.load()
                    # Cleared before the claim: an accept during it sets it again.
                    self._maybe_queued = bool(running)
                    claimed = await self._store.claim(self._owner, room, busy=busy,
                                                      running=running)
                    for record in claimed:
                        self._spawn(record)
                    if claimed and len(claimed) == room:
                        pause = BUSY_POLL_S
                        self._maybe_queued = True
            except FaasError as exc:
                self._maybe_queued = True
                log.warning("could not claim queued calls: %s", exc)
            except Exception:
                self._maybe_queued = True
                log.exception("the async dispatcher failed; going on")
            self._wake.clear()
            try:
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            except TimeoutError:
                self._maybe_queued = True  # calls queued elsewhere, or past their backoff

    def _spawn(self, record: InvocationRecord) -> None:
        task = asyncio.ensure_future(self._run(record))
        self._runs.add(task)
        task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self._maybe_queued = True  # a call of a capped function may be claimable now
        if not task.cancelled() and task.exception() is not None:
            log.error("an async run failed", exc_info=task.exception())
        self._wake.set()

    async def _run(self, record: InvocationRecord) -> None:
        token = request_id_var.set(record.request_id)
        this = asyncio.current_task()
        call = self._live.add(record, this)
        exc: FaasError | None = None
        try:
            try:
                outcome = from_result(await self._invoke(record), self._cap)
            except _NotStarted:
                # Claimed as the server began to stop: back to the queue, attempt unused.
                await self._store.requeue(record.id, self._owner, not_before=now_us(),
                                          error=None, refund=True)
                self._live.settled([record.id])
                return
            except FaasError as error:
                exc = error
                outcome = from_error(error, self._cap, record.request_id)
            except asyncio.CancelledError:
                if not call.cancelled or this is None:
                    raise
                this.uncancel()  # cancelled by a DELETE: the row already says so
                self._live.settled([record.id])
                self._count(record, "cancelled")
                return
            self._count(record, outcome_of(exc, outcome.error))
            if should_retry(record, outcome, exc):
                pause = backoff_us(record.attempts)
                log.info("attempt %d of %d ended %s; retrying in %.1fs", record.attempts,
                         record.max_attempts, outcome.status, pause / 1e6)
                await self._store.requeue(record.id, self._owner, not_before=now_us() + pause,
                                          error=outcome.error or outcome.status)
                self._live.settled([record.id])
                return
            await self._writer.end(record.id, self._owner, outcome)
            self._live.settled([record.id])
            self._ended()
        except FaasError as error:
            # The store failed: the row stays running under this owner; the next start
            # recovers it (retry or error, per its policy).
            log.error("could not record the end of an async call: %s", error)
            self._live.settled([record.id])
        finally:
            request_id_var.reset(token)

    async def _invoke(self, record: InvocationRecord) -> InvocationResult:
        if record.request is None:
            raise ValidationError("the queued call has nothing to run")
        request, bundle_ref, secret_names = decode_call(record.request)
        secrets: tuple[Secret, ...] = ()
        if secret_names:
            # Read when the call runs, never queued with it: no value rests in the queue.
            if self._secrets is None:
                raise ValidationError("this server cannot read secrets")
            secrets = await self._secrets(record.function_id, secret_names)
        bundle = None
        if bundle_ref is not None:
            bundle = FunctionBundle(bundle_ref.sha256,
                                    self._functions.bundles.path(bundle_ref.sha256),
                                    bundle_ref.unpacked_bytes)
        with self._functions.gates.gate(record.function_id, record.concurrency_cap) as gate:
            # Nothing awaits between this check and invoke's own: a call refused here was
            # never started, one past it is the orchestrator's to run or to kill.
            if not self._orch.accepting:
                raise _NotStarted
            return await self._orch.invoke(record.function_id, request, record.request_id,
                                           bundle=bundle, gate=gate, secrets=secrets)

    def _count(self, record: InvocationRecord, outcome: str) -> None:
        self._functions.count_call(record.function_id, record.version, outcome)

    def stop_claiming(self) -> None:
        self.claiming = False
        self._wake.set()

    async def close(self, timeout_s: float) -> None:
        """Stop claiming; wait for runs (the orchestrator's drain ends them) to record."""
        self.stop_claiming()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runs:
            _, pending = await asyncio.wait(set(self._runs), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
