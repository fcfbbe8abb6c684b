"""``db.group_commit``: concurrent writes leave together, each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from prompt_ledger.db.group_commit import GroupCommit


class Recorder:
    """A write that records its batches and doubles each item (or fails on a poison one)."""

    def __init__(self, delay_s: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay_s)
        if -1 in items:
            raise RuntimeError("poison")
        return [item * 2 for item in items]


async def test_a_lone_write_leaves_at_once_in_a_batch_of_one() -> None:
    write = Recorder()
    assert await GroupCommit(write)(21) == 42
    assert write.batches == [[21]]


async def test_writes_arriving_during_a_batch_go_together_in_the_next() -> None:
    write = Recorder()
    group = GroupCommit(write)
    first = asyncio.create_task(group(1))
    await asyncio.sleep(0.001)  # the first batch is being written
    rest = await asyncio.gather(*(group(n) for n in range(2, 12)))
    assert await first == 2
    assert rest == [n * 2 for n in range(2, 12)]
    assert write.batches == [[1], list(range(2, 12))]


async def test_batches_are_capped() -> None:
    write = Recorder()
    group = GroupCommit(write, max_batch=4)
    assert await asyncio.gather(*(group(n) for n in range(10))) == [n * 2 for n in range(10)]
    assert [len(b) for b in write.batches] == [4, 4, 2]


async def test_a_failed_batch_fails_its_callers_only() -> None:
    write = Recorder()
    group = GroupCommit(write)
    first = asyncio.create_task(group(1))
    await asyncio.sleep(0.001)
    poisoned = [asyncio.create_task(group(n)) for n in (-1, 5)]
    await asyncio.sleep(0.001)
    assert await first == 2
    for task in poisoned:
        with pytest.raises(RuntimeError, match="poison"):
            await task
    assert await group(7) == 14  # the writer carries on


async def test_a_caller_that_gives_up_does_not_stop_the_batch() -> None:
    write = Recorder(delay_s=0.05)
    group = GroupCommit(write)
    impatient = asyncio.create_task(group(1))
    patient = asyncio.create_task(group(2))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == 4
    assert write.batches == [[1, 2]]
