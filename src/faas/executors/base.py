"""The one contract between the orchestrator and every isolation tier.

An executor runs one ``ExecutionSpec`` in a fresh sandbox and returns an
``InvocationResult``. It must:

* enforce ``spec.deadline`` (absolute, loop clock) by destroying the sandbox
  when it passes, and then return the partial result with ``timed_out=True``
  rather than raise;
* report a command that ran and failed (non-zero exit, signal, command not
  found) in the result's ``error``, not as an exception;
* raise a ``FaasError`` subclass (``SandboxError``, ``ImageNotFound``,
  ``ExecutorUnavailable``, ``AgentProtocolError``) only when the platform
  itself failed;
* leave nothing behind on any path, cancellation included: every process,
  mount, cgroup, socket and temp file it made is gone when ``run`` returns or
  raises;
* make ``aclose()`` idempotent: it destroys whatever is still running.

Optional: an executor that pre-starts sandboxes sets ``start_kind`` and
``start_ms`` on its results and implements ``PoolStats`` (``pool_stats() ->
[(pool, ready, starting)]``) for ``/metrics``.

After ``aclose()``, ``run`` raises ``ExecutorClosed`` (every executor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from faas.models import ExecutionSpec, InvocationResult


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a tier can run here, and if not, why (shown by ``faas doctor``)."""

    usable: bool
    reason: str


@runtime_checkable
class Executor(Protocol):
    name: str

    async def run(self, spec: ExecutionSpec) -> InvocationResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PoolStats(Protocol):
    """Optional: an executor that keeps pools of pre-started sandboxes reports them."""

    def pool_stats(self) -> list[tuple[str, int, int]]:
        """(pool name, ready, starting) of each pool."""
        ...
