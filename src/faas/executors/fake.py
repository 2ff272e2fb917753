"""An in-memory executor for fast tests of the layers above the executors.

``handler`` maps a spec to a result (or raises); the default echoes the
payload. It honours the deadline like a real executor: if the handler is
still running when the deadline passes, it returns ``timed_out``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from faas.models import ExecutionSpec, InvocationResult

Handler = Callable[[ExecutionSpec], Awaitable[InvocationResult]]


async def echo(spec: ExecutionSpec) -> InvocationResult:
    return InvocationResult(stdout=spec.payload, exit_code=0)


class FakeExecutor:
    def __init__(self, handler: Handler = echo, name: str = "fake") -> None:
        self.name = name
        self.handler = handler
        self.calls: list[ExecutionSpec] = []
        self.running = 0
        self.closed = False

    async def run(self, spec: ExecutionSpec) -> InvocationResult:
        self.calls.append(spec)
        self.running += 1
        try:
            async with asyncio.timeout_at(spec.deadline):
                result = await self.handler(spec)
        except TimeoutError:
            result = InvocationResult(timed_out=True, error="timed out")
        finally:
            self.running -= 1
        result.executor = self.name
        result.request_id = spec.request_id
        return result

    async def aclose(self) -> None:
        self.closed = True
