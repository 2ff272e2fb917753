"""The snapshot store keeps a bounded number of classes: a caller cycling through
VM shapes cannot fill the disk with saved guests (no VM is booted here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faas.executors.microvm import snapshot
from faas.executors.microvm.snapshot import KEEP_SNAPSHOTS, MAX_IN_USE, Snapshot, SnapshotStore


async def test_snapshots_of_many_classes_are_pruned_to_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []

    async def fake_take(driver: Any, config: Any, dest: Path, **_: Any) -> Snapshot:
        dest.mkdir(parents=True)
        for name in ("state", "scratch.ext4", "meta.json"):
            (dest / name).write_bytes(b"x")
        taken.append(dest.name)
        return Snapshot(dest.name, dest)

    monkeypatch.setattr(snapshot, "snapshot_key", lambda driver, config: f"class-{config}")
    monkeypatch.setattr(snapshot, "take_snapshot", fake_take)
    store = SnapshotStore(tmp_path, run_dir=None, timeout_s=5)
    for memory_mb in range(16, 16 + 40):  # a caller choosing a new memory_mb every call
        await store.get(None, memory_mb)  # type: ignore[arg-type]
    assert len(taken) == 40
    left = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(left) <= MAX_IN_USE + KEEP_SNAPSHOTS
    # The most recent class is kept and served from memory without a new snapshot.
    await store.get(None, 16 + 39)  # type: ignore[arg-type]
    assert len(taken) == 40
