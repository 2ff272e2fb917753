"""The SQLite engine's settings: WAL, and writers that take the lock before they read."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from faas.store.engine import create_engines
from faas.store.url import parse_database_url


async def test_sqlite_read_then_write_transactions_serialise(tmp_path: Path) -> None:
    # In WAL mode a deferred transaction that reads, then writes after another
    # writer committed, fails at once with "database is locked" (the busy
    # timeout does not help). Write transactions begin IMMEDIATE to avoid it.
    target = parse_database_url(None, tmp_path)
    pools = [create_engines(target) for _ in range(3)]
    try:
        async with pools[0].write.begin() as conn:
            await conn.execute(text("CREATE TABLE tally (n INTEGER PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO tally VALUES (0)"))

        async def next_number(index: int) -> None:
            async with pools[index % 3].write.begin() as conn:
                current = (await conn.execute(text("SELECT MAX(n) FROM tally"))).scalar_one()
                await asyncio.sleep(0.001)  # let the others start their transactions
                await conn.execute(text("INSERT INTO tally VALUES (:n)"), {"n": current + 1})

        await asyncio.gather(*(next_number(i) for i in range(30)))
        async with pools[1].read.begin() as conn:
            numbers = (await conn.execute(text("SELECT n FROM tally ORDER BY n"))).scalars()
            assert list(numbers) == list(range(31))
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            assert mode == "wal"
    finally:
        for pool in pools:
            await pool.dispose()
