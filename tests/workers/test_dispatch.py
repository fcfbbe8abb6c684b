"""``CeleryDispatcher``'s circuit breaker against a real, private ``redis-server`` that is
stopped (connections refused), frozen with SIGSTOP (connections accepted, nothing answers) and
started again. No database is involved: the dispatcher only publishes ids."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from tests.workers.conftest import RedisServer
from tests.workers.test_celery import wait_until

from prompt_ledger.workers.celery_app import QUEUE
from prompt_ledger.workers.dispatch import (
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    PUBLISH_TIMEOUT_S,
    CeleryDispatcher,
    QueueUnavailable,
)

pytestmark = pytest.mark.redis

# Publishing while the breaker is open must not wait on anything (SPEC §12: a submit answers
# within 100 ms of its commit); this is the bound for one such publish.
FAST_S = 0.1
# A loaded 2-core machine gets this much slack on every timing below.
SLACK_S = 1.5


@pytest.fixture
async def dispatcher(private_redis: RedisServer) -> AsyncIterator[CeleryDispatcher]:
    """A dispatcher whose connection to Redis is established (one publish went through)."""
    dispatcher = CeleryDispatcher(private_redis.url)
    try:
        await dispatcher.publish(uuid.uuid4())
        private_redis.client().delete(QUEUE)
        yield dispatcher
    finally:
        private_redis.thaw()
        dispatcher.close()


async def failed_publish(dispatcher: CeleryDispatcher) -> tuple[float, QueueUnavailable]:
    """Publish one id that must not get through: how long the failure took, and the error."""
    started = time.monotonic()
    with pytest.raises(QueueUnavailable) as raised:
        await dispatcher.publish(uuid.uuid4())
    return time.monotonic() - started, raised.value


async def open_breaker(dispatcher: CeleryDispatcher) -> None:
    took, error = await failed_publish(dispatcher)
    assert took < PUBLISH_TIMEOUT_S + SLACK_S
    assert error.__cause__ is not None  # the broker's own error: this publish was tried
    assert dispatcher.breaker_open


async def wait_closed(dispatcher: CeleryDispatcher) -> None:
    await wait_until(lambda: not dispatcher.breaker_open, "the probe to close the breaker", 10)


class TestClosed:
    async def test_publishes_reach_the_queue(
        self, dispatcher: CeleryDispatcher, private_redis: RedisServer
    ) -> None:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for execution_id in ids:
            await dispatcher.publish(uuid.UUID(execution_id))
        later = uuid.uuid4()
        await dispatcher.publish(later, delay_s=30)  # a countdown is on the queue at once too
        assert sorted(private_redis.queued_execution_ids()) == sorted([*ids, str(later)])
        assert not dispatcher.breaker_open


class TestRedisStopped:
    async def test_the_first_failure_opens_and_then_every_publish_fails_at_once(
        self, dispatcher: CeleryDispatcher, private_redis: RedisServer
    ) -> None:
        private_redis.stop()
        await open_breaker(dispatcher)
        timings = []
        for _ in range(50):
            took, error = await failed_publish(dispatcher)
            timings.append(took)
            assert error.__cause__ is None  # not tried at all
            assert "circuit breaker open" in str(error)
        assert max(timings) < FAST_S, timings

    async def test_stays_open_while_redis_is_down(
        self, dispatcher: CeleryDispatcher, private_redis: RedisServer
    ) -> None:
        private_redis.stop()
        await open_breaker(dispatcher)
        await asyncio.sleep(4 * PROBE_INTERVAL_S)  # several probes, all refused
        assert dispatcher.breaker_open
        took, _ = await failed_publish(dispatcher)
        assert took < FAST_S

    async def test_the_probe_closes_it_once_redis_answers_and_publishes_flow_again(
        self, dispatcher: CeleryDispatcher, private_redis: RedisServer
    ) -> None:
        private_redis.stop()
        await open_breaker(dispatcher)
        private_redis.start()  # same port, empty
        started = time.monotonic()
        await wait_closed(dispatcher)
        assert time.monotonic() - started < PROBE_INTERVAL_S + PROBE_TIMEOUT_S + SLACK_S
        execution_id = uuid.uuid4()
        await dispatcher.publish(execution_id)
        # only what was published after the breaker closed: nothing reached Redis meanwhile
        assert private_redis.queued_execution_ids() == [str(execution_id)]

    async def test_it_opens_again_on_the_next_outage(
        self, dispatcher: CeleryDispatcher, private_redis: RedisServer
    ) -> None:
        for _ in range(2):
            private_redis.stop()
            await open_breaker(dispatcher)
            private_redis.start()
            await wait_closed(dispatcher)
            await dispatcher.publish(uuid.uuid4())
        assert len(private_redis.queued_messages()) == 1  # the second start emptied it again

    async def test_a_dispatcher_started_during_the_outage_fails_fast_too(
        self, private_redis: RedisServer
    ) -> None:
        private_redis.stop()
        dispatcher = CeleryDispatcher(private_redis.url)
        try:
            await open_breaker(dispatcher)
            private_redis.start()
            await wait_closed(dispatcher)
            await dispatcher.publish(uuid.uuid4())
            assert len(private_redis.queued_messages()) == 1
        finally:
            dispatcher.close()


class TestRedisHung:
    async def test_a_hung_publish_is_bounded_and_those_queued_behind_it_fail_with_it(
        self, dispatcher: CeleryDispatcher, private_redis: RedisServer
    ) -> None:
        private_redis.freeze()
        started = time.monotonic()
        results = await asyncio.gather(
            *(dispatcher.publish(uuid.uuid4()) for _ in range(10)), return_exceptions=True
        )
        took = time.monotonic() - started
        assert all(isinstance(r, QueueUnavailable) for r in results), results
        # one publish waits out the socket timeout; the nine behind it do not (10 x 1 s before)
        assert took < PUBLISH_TIMEOUT_S + SLACK_S
        assert sum(r.__cause__ is not None for r in results) == 1
        assert dispatcher.breaker_open

        await asyncio.sleep(3 * (PROBE_INTERVAL_S + PROBE_TIMEOUT_S))  # PINGs time out
        assert dispatcher.breaker_open
        took, _ = await failed_publish(dispatcher)
        assert took < FAST_S

        private_redis.thaw()
        await wait_closed(dispatcher)
        await dispatcher.publish(uuid.uuid4())


class TestClose:
    async def test_close_stops_the_probe(self, private_redis: RedisServer) -> None:
        dispatcher = CeleryDispatcher(private_redis.url)
        private_redis.stop()
        await open_breaker(dispatcher)
        dispatcher.close()
        private_redis.start()
        await asyncio.sleep(4 * PROBE_INTERVAL_S)
        assert dispatcher.breaker_open  # nobody probed
