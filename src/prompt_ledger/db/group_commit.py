"""Group commit: concurrent writes of one kind leave as one statement and one commit.

At c=64, 64 runs each insert a row and finish a row within the same few milliseconds; as
separate statements that is 128 round trips, 128 commits (each a WAL flush), and 64
writers queueing on the same hot rollup rows. ``GroupCommit`` lets the writes that arrive
while one batch is being written wait and go together in the next: the first write of a
quiet moment leaves at once (no added latency at c=1), and under load batches form by
themselves, sized by how long the previous one took. Each caller is answered only after its
batch has committed, with its own item's result (or the batch's error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Writes items through ``write(items) -> results`` (one result per item, in order), at
    most ``max_batch`` at a time, one batch after another. Bound to the event loop it is
    first used on (one per process)."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 64,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, answer))
        if self._flusher is None:
            # a task, so that writes made in this same turn of the loop join the batch
            self._flusher = loop.create_task(self._flush())
        return await answer

    async def _flush(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as exc:  # every caller of the batch gets the error
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), result in zip(batch, results, strict=True):
                    if not answer.done():
                        answer.set_result(result)
        finally:
            self._flusher = None
            # only when the flusher itself was cancelled (the loop is closing): nobody waits
            for _, answer in [*batch, *self._pending]:
                if not answer.done():
                    answer.cancel()
            self._pending.clear()
