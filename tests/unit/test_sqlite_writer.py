"""The outbox's inserts on the event loop: a locked file and the WAL's growth."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from amfeishu.backend import sqlite_writer
from amfeishu.backend.base import NewEntry, StorageError
from amfeishu.backend.sqlite import SQLiteOutbox
from tests.support.processes import until


def entry(key: str, size: int = 100) -> NewEntry:
    return NewEntry("ops", b'{"alerts": [], "pad": "' + b"x" * size + b'"}', key, "trace", 1)


def test_a_batch_that_finds_the_file_locked_waits_on_the_thread(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")

    async def run() -> None:
        box = SQLiteOutbox(path)
        await box.open()
        other = sqlite3.connect(path, isolation_level=None)  # like `amfeishu outbox revive`
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        put = asyncio.create_task(box.put([entry("a")]))
        await until(lambda: box._writer.handovers == 1, "the batch to go to the thread")
        assert not put.done()  # not refused, not lost: waiting for the lock
        other.execute("COMMIT")
        [stored] = await put
        assert [e.id for e in await box.pending()] == [stored.id]
        [again] = await box.put([entry("b")])  # the loop's own connection again
        assert box._writer.handovers == 1 and again.id > stored.id
        other.close()
        await box.close()

    asyncio.run(run())


def test_checkpoints_on_the_thread_keep_the_wal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_writer, "CHECKPOINT_EVERY", 1024 * 1024)
    path = tmp_path / "outbox.db"
    wal = tmp_path / "outbox.db-wal"
    written = largest = 0

    async def run() -> None:
        nonlocal written, largest
        box = SQLiteOutbox(str(path))
        await box.open()
        for batch in range(200):  # 200 commits of 10 rows of 2 KB: 4 MB, ~25 MB of WAL
            items = [entry(f"{batch}-{i}", 2000) for i in range(10)]
            await asyncio.gather(*(box.put([i]) for i in items))
            written += sum(len(i.body) for i in items)
            await box._writer.settled()
            largest = max(largest, wal.stat().st_size)  # closing deletes it: measured here
        assert len(await box.pending()) == 2000
        await box.close()

    asyncio.run(run())
    assert largest < 3 * 1024 * 1024, f"WAL grew to {largest} bytes, {written} bytes written"


def test_a_closed_outbox_refuses_with_a_storage_error(tmp_path: Path) -> None:
    async def run() -> None:
        box = SQLiteOutbox(str(tmp_path / "outbox.db"))
        await box.open()
        await box.close()
        with pytest.raises(StorageError, match="closed"):
            await box.put([entry("late")])

    asyncio.run(run())


def test_requests_arriving_over_a_few_iterations_share_one_commit(tmp_path: Path) -> None:
    async def run() -> None:
        box = SQLiteOutbox(str(tmp_path / "outbox.db"))
        await box.open()
        puts = []
        for wave in range(3):  # as requests come off the sockets, a few each iteration
            puts += [asyncio.create_task(box.put([entry(f"{wave}-{i}")])) for i in range(4)]
            await asyncio.sleep(0)
        ids = [e.id for [e] in await asyncio.gather(*puts)]
        assert box._writer.commits == 1 and len(set(ids)) == 12
        [alone] = await box.put([entry("quiet")])  # a quiet service: committed at once
        assert box._writer.commits == 2 and alone.id > max(ids)
        await box.close()

    asyncio.run(run())


def test_a_steady_trickle_still_commits_every_few_iterations(tmp_path: Path) -> None:
    async def run() -> None:
        box = SQLiteOutbox(str(tmp_path / "outbox.db"))
        await box.open()
        first = asyncio.create_task(box.put([entry("first")]))
        others = []
        for i in range(4 * sqlite_writer.WAIT_ITERATIONS):  # one new request every iteration
            if first.done():
                break
            others.append(asyncio.create_task(box.put([entry(str(i))])))
            await asyncio.sleep(0)
        assert first.done(), "a commit waited for ever on a steady stream"
        await asyncio.gather(first, *others)
        assert len(await box.pending()) == 1 + len(others)
        await box.close()

    asyncio.run(run())


def test_no_commit_on_the_loop_while_a_checkpoint_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint's fsync can hold WAL writes for long on ext4: the loop must not be the
    one waiting. Meanwhile requests are committed on the outbox's thread."""
    monkeypatch.setattr(sqlite_writer, "CHECKPOINT_EVERY", 1)  # every commit asks for one
    release = threading.Event()

    async def run() -> None:
        box = SQLiteOutbox(str(tmp_path / "outbox.db"))
        await box.open()
        writer = box._writer
        slow = asyncio.create_task(writer._checkpointer.run(lambda db: release.wait(10)))
        await box.put([entry("a")])  # committed here; its checkpoint queues behind `slow`
        assert writer.commits == 1 and writer.handovers == 0
        later = await asyncio.gather(*(box.put([entry(f"b{i}")]) for i in range(3)))
        assert writer.commits == 1 and writer.handovers == 1  # one commit, on the thread
        assert not slow.done()  # all while the "checkpoint" was still syncing
        release.set()
        await slow
        await writer.settled()
        [after] = await box.put([entry("c")])
        assert writer.commits == 2 and after.id > max(e.id for [e] in later)  # here again
        assert len(await box.pending()) == 5
        await box.close()

    asyncio.run(run())
