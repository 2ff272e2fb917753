"""Per-function concurrency caps: one ``Admission`` gate per deployed function that has one.

A call beyond the function's ``max_concurrency`` waits in its gate's queue
(at most the server's ``max_queue`` waiters) until a slot frees or its
deadline passes (504), or is refused at once when that queue is full (429),
exactly as the server-wide admission does. Gates exist only while used: an
idle one is dropped, so memory is bounded by the calls in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from faas.orchestrator import Admission


class Gates:
    def __init__(self, queue: int) -> None:
        self.queue = queue
        self._gates: dict[tuple[str, int], tuple[Admission, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._gates)

    def load(self) -> tuple[set[str], dict[str, int]]:
        """Functions at their cap, and the calls (running or waiting) of each gated one."""
        busy: set[str] = set()
        running: dict[str, int] = {}
        for (function_id, limit), (_, users) in self._gates.items():
            running[function_id] = running.get(function_id, 0) + users[0]
            if users[0] >= limit:
                busy.add(function_id)
        return busy, running

    @contextlib.contextmanager
    def gate(self, function_id: str, limit: int | None) -> Iterator[Admission | None]:
        """The gate of ``function_id`` for a cap of ``limit`` (None: no gate), for one call.

        Keyed by the cap too: a new version with another cap gets a fresh gate
        while calls of the old one finish under theirs.
        """
        if limit is None:
            yield None
            return
        key = (function_id, limit)
        if key not in self._gates:
            self._gates[key] = (Admission(limit, self.queue, None), [0])
        gate, users = self._gates[key]
        users[0] += 1  # counted from here, not from the slot: the call's task starts later
        try:
            yield gate
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._gates[key]
