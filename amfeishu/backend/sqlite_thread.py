"""One SQLite connection, used only from a thread of its own: the outbox and the card
registry each keep one (WAL lets both write to the same file)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from amfeishu.backend.base import StorageError

T = TypeVar("T")


class SQLiteThread:
    def __init__(self, path: str, what: str, thread: str) -> None:
        self.path = path
        self.what = what  # "outbox": names it in every error
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread)
        self._db: sqlite3.Connection | None = None

    async def open(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Connect and run `setup` (pragmas, schema); StorageError naming the file if not."""

        def connect() -> None:
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open {self.what} {self.path}: {exc}") from exc
            try:
                setup(db)
                db.commit()
            except sqlite3.Error as exc:
                db.close()
                raise StorageError(f"cannot open {self.what} {self.path}: {exc}") from exc
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the thread; a SQLite error rolls back and is a StorageError."""
        if self._db is None:  # closed, its thread gone too (a late call during shutdown)
            raise StorageError(f"{self.what} is closed")

        def call() -> T:
            if self._db is None:
                raise StorageError(f"{self.what} is closed")
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                self._db.rollback()
                raise StorageError(f"{self.what} {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)
