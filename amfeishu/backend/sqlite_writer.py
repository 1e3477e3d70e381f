"""The outbox's inserts, committed on the event loop: requests that arrive together in
one transaction (LoopWriter._gather), on a connection of the loop's own.

Measured (benchmarks/throughput.py, py-spy): handing each batch to the SQLite thread
cost more than the insert itself: the executor, the wake-up and the GIL changing hands
were ~55 µs of a request's ~175. A commit here writes the WAL without an fsync
(synchronous=NORMAL), tens of µs a row. What can take long stays off the loop:
checkpoints, the only fsync, run on a thread of their own, and no write is made here
while one runs (on ext4 its fsync held our WAL writes for up to 0.6 s): meanwhile the
batches go to the outbox's thread, which may wait but keeps the loop free; and when
another connection holds the write lock (the card registry, `amfeishu outbox`), the batch
goes to that thread too, which waits for the lock, rather than the loop sleeping in
SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any

from amfeishu.backend.base import Entry, NewEntry, StorageError
from amfeishu.backend.sqlite_thread import SQLiteThread

Insert = Callable[[sqlite3.Connection, list[NewEntry]], list[Entry]]
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
CHECKPOINT_EVERY = 16 * 1024 * 1024  # bytes of WAL between checkpoints
# A commit appends its rows' pages and about six more (indexes, sequence, interior):
# measured, 10 rows of 2 KB wrote 7.7 pages of 16 KB a commit.
PAGES_PER_COMMIT = 6
BATCH_MAX = 64  # requests a commit waits for, at most
WAIT_ITERATIONS = 8  # loop iterations a commit waits for more requests, at most


class LoopWriter:
    def __init__(self, thread: SQLiteThread, insert: Insert) -> None:
        self._thread = thread
        self._checkpointer = SQLiteThread(thread.path, thread.what, "checkpoint")
        self._insert = insert
        self._db: sqlite3.Connection | None = None
        self._batch: list[tuple[NewEntry, asyncio.Future[Entry]]] = []
        self._scheduled = False
        self._seen = self._waited = 0  # batch size at the last look; iterations waited
        self._since_checkpoint = 0  # bytes of WAL, estimated
        self._checkpointing = False
        self._page = 4096
        self._tasks: set[asyncio.Task[None]] = set()  # batches on the thread, checkpoints
        self.handovers = 0  # batches sent to the thread: the file locked, or a checkpoint
        self.commits = 0  # made on the loop's connection

    async def open(self) -> None:
        """After the thread's connection made the schema."""
        await self._checkpointer.open(_checkpointer_setup)
        try:
            db = sqlite3.connect(self._thread.path, timeout=0)  # locked: hand over at once
            db.execute("PRAGMA synchronous=NORMAL")  # per connection, as on the thread's
            db.execute("PRAGMA wal_autocheckpoint=0")  # _checkpoint's, on its own thread
            self._page = int(db.execute("PRAGMA page_size").fetchone()[0])
        except sqlite3.Error as exc:
            await self._checkpointer.close()
            raise StorageError(f"cannot open outbox {self._thread.path}: {exc}") from exc
        self._db = db

    async def settled(self) -> None:
        """Returns when the batches handed to the thread and the checkpoints are done."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.settled()
        if self._db is not None:
            self._db.close()
            self._db = None
        await self._checkpointer.close()

    async def put(self, items: list[NewEntry]) -> list[Entry]:
        """Durable when it returns. Callers that arrive together share one transaction."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._batch.extend(zip(items, futures, strict=True))
        if not self._scheduled:
            self._scheduled = True
            self._seen, self._waited = 0, 0
            loop.call_soon(self._gather)
        if len(futures) == 1:  # the usual request: no gathering future to build
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    def _gather(self) -> None:
        """Commits once a loop iteration passed with no new request joining (or the batch
        is full, or it waited enough): requests that arrive together share a commit.

        A commit's cost is mostly per commit (a dozen system calls for its WAL frames and
        locks): measured, ~38 µs a row in commits of 2 rows, ~17 in commits of 16. At
        one iteration per batch, commits under load held ~4 requests; this holds ~all of
        those in flight, and waits a single iteration (µs) when the service is quiet.
        """
        size = len(self._batch)
        if size > self._seen and size < BATCH_MAX and self._waited < WAIT_ITERATIONS:
            self._seen, self._waited = size, self._waited + 1
            asyncio.get_running_loop().call_soon(self._gather)
            return
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._batch = self._batch, []
        items = [item for item, _ in batch]
        try:
            entries = None if self._checkpointing else self._here(items)
        except StorageError as exc:
            _fail(batch, exc)
            return
        if entries is None:  # checkpointing, or locked by another connection
            self.handovers += 1
            self._spawn(self._on_thread(batch))
            return
        self.commits += 1
        _settle(batch, entries)
        self.wrote(sum(len(item.body) for item in items))

    def wrote(self, payload: int) -> None:
        """A commit of `payload` bytes was made (here or by the thread's updates): the
        checkpoint starts when the WAL has grown by about CHECKPOINT_EVERY."""
        self._since_checkpoint += payload + PAGES_PER_COMMIT * self._page
        if self._since_checkpoint >= CHECKPOINT_EVERY and not self._checkpointing:
            self._since_checkpoint = 0
            self._checkpointing = True
            self._spawn(self._checkpoint())

    def _here(self, items: list[NewEntry]) -> list[Entry] | None:
        """Inserted and committed on this connection; None when another one holds the lock."""
        if self._db is None:
            raise StorageError("outbox is closed")
        try:
            return self._insert(self._db, items)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY:
                return None
            raise StorageError(f"outbox {self._thread.path}: {exc}") from exc

    async def _on_thread(self, batch: list[tuple[NewEntry, asyncio.Future[Entry]]]) -> None:
        items = [item for item, _ in batch]
        try:
            entries = await self._thread.run(lambda db: self._insert(db, items))
        except StorageError as exc:
            _fail(batch, exc)
            return
        _settle(batch, entries)

    async def _checkpoint(self) -> None:
        # PASSIVE: copies what it can without waiting for, or holding up, a writer.
        sql = "PRAGMA wal_checkpoint(PASSIVE)"
        try:
            with contextlib.suppress(StorageError):  # the next one catches up
                await self._checkpointer.run(lambda db: db.execute(sql).fetchall())
        finally:
            self._checkpointing = False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _checkpointer_setup(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA synchronous=NORMAL")  # as the writers: one fsync before, one after


def _settle(batch: list[tuple[NewEntry, asyncio.Future[Entry]]], entries: list[Entry]) -> None:
    for (_, future), entry in zip(batch, entries, strict=True):
        if not future.done():
            future.set_result(entry)


def _fail(batch: list[tuple[NewEntry, asyncio.Future[Entry]]], exc: StorageError) -> None:
    for _, future in batch:  # every waiter learns of it and answers 503
        if not future.done():
            future.set_exception(StorageError(str(exc)))
