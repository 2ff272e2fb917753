"""Where one store test's database lives (its own module: test folders are not packages,
so ``from conftest import ...`` could find another folder's conftest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faas.store import Store, open_store


@dataclass(frozen=True)
class Backend:
    """Where one test's database lives, as ``open_store`` takes it."""

    engine: str
    database_url: str | None
    data_dir: Path

    async def open(self) -> Store:
        return await open_store(self.database_url, self.data_dir)
