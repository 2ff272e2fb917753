"""The one-second table of recent "is it deployed?" answers: bounded, expiring, forgettable."""

from __future__ import annotations

import time

from faas.functions.recent import RecentLookups


def test_ids_callers_invent_cannot_grow_the_table() -> None:
    recent = RecentLookups(size=100)
    for i in range(10_000):
        recent.put(f"random-{i}", None)
    assert len(recent) == 100
    assert recent.get("random-9999") == (True, None)
    assert recent.get("random-0") == (False, None)  # the oldest went first


def test_an_answer_expires_and_can_be_forgotten() -> None:
    recent = RecentLookups(ttl_s=0.05)
    recent.put("f", None)
    assert recent.get("f") == (True, None)
    time.sleep(0.06)
    assert recent.get("f") == (False, None)
    recent.put("g", None)
    recent.forget("g")
    assert recent.get("g") == (False, None)
