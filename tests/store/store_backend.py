"""Where one store test's database lives (its own module: test folders are not packages,
so ``from conftest import ...`` could find another folder's conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from faas.store import Store, open_store
from faas.store.engine import create_engines
from faas.store.url import parse_database_url


@dataclass(frozen=True)
class Backend:
    """Where one test's database lives, as ``open_store`` takes it."""

    engine: str
    database_url: str | None
    data_dir: Path

    async def open(self) -> Store:
        return await open_store(self.database_url, self.data_dir)


@asynccontextmanager
async def raw(backend: Backend) -> AsyncIterator[AsyncConnection]:
    """A plain transaction on the test's database, beside the store."""
    target = parse_database_url(backend.database_url, backend.data_dir)
    backend.data_dir.mkdir(mode=0o700, exist_ok=True)
    engines = create_engines(target)
    try:
        async with engines.write.begin() as conn:
            yield conn
    finally:
        await engines.dispose()
