"""The event bus: local listeners, real Redis pub/sub, and failures that never reach publishers."""

from __future__ import annotations

import asyncio
import json
import time

from redis.asyncio import Redis

from promptlooper.events import DEFAULT_CHANNEL, EventBus


async def test_in_process_listeners_receive_events_in_order():
    bus = EventBus()
    seen: list[dict] = []
    bus.subscribe(seen.append)

    await bus.publish({"type": "run.started", "run_id": "r1"})
    await bus.publish({"type": "run.completed", "run_id": "r1"})

    assert [e["type"] for e in seen] == ["run.started", "run.completed"]
    assert all("ts" in e for e in seen)


def test_a_bus_has_an_audience_only_with_listeners_or_redis():
    bus = EventBus()
    assert not bus.has_audience
    unsubscribe = bus.subscribe(lambda _event: None)
    assert bus.has_audience
    unsubscribe()
    assert not bus.has_audience
    assert EventBus("redis://127.0.0.1:6379/0").has_audience


async def test_async_listeners_are_awaited():
    bus = EventBus()
    seen: list[str] = []

    async def listener(event: dict) -> None:
        await asyncio.sleep(0)
        seen.append(event["type"])

    bus.subscribe(listener)
    await bus.publish({"type": "x"})

    assert seen == ["x"]


async def test_a_failing_listener_does_not_stop_the_others_or_the_publisher(caplog):
    bus = EventBus()
    seen: list[dict] = []

    def broken(_event: dict) -> None:
        raise ValueError("listener exploded")

    async def broken_async(_event: dict) -> None:
        raise RuntimeError("async listener exploded")

    bus.subscribe(broken)
    bus.subscribe(broken_async)
    bus.subscribe(seen.append)

    await bus.publish({"type": "run.failed"})

    assert len(seen) == 1
    assert "listener exploded" in caplog.text


async def test_unsubscribe_stops_delivery():
    bus = EventBus()
    seen: list[dict] = []
    unsubscribe = bus.subscribe(seen.append)
    unsubscribe()

    await bus.publish({"type": "x"})

    assert seen == []


async def test_events_reach_a_real_redis_subscriber(redis_url: str):
    bus = EventBus(redis_url)
    subscriber = Redis.from_url(redis_url)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(DEFAULT_CHANNEL)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation

    await bus.publish({"type": "run.completed", "run_id": "abc"})
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)

    await pubsub.aclose()
    await subscriber.aclose()
    await bus.close()
    assert message is not None
    assert json.loads(message["data"])["run_id"] == "abc"


async def test_listen_streams_events_from_another_process_through_redis(redis_url: str):
    receiver = EventBus(redis_url)
    sender = EventBus(redis_url)  # stands for another process: it shares nothing but Redis
    received: list[dict] = []

    async def consume() -> None:
        async for event in receiver.listen():
            received.append(event)
            if len(received) == 2:
                return

    task = asyncio.create_task(consume())
    for _ in range(50):  # until the subscription is live
        await sender.publish({"type": "probe"})
        await asyncio.sleep(0.02)
        if received:
            break
    await sender.publish({"type": "run.completed"})
    await asyncio.wait_for(task, 5)
    await sender.close()
    await receiver.close()

    assert received[0]["type"] == "probe"
    assert received[-1]["type"] == "run.completed"


async def test_listen_without_redis_streams_local_events():
    bus = EventBus()
    stream = bus.listen()
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)

    await bus.publish({"type": "local"})

    assert (await asyncio.wait_for(pending, 1))["type"] == "local"
    await stream.aclose()


async def test_unreachable_redis_never_raises_and_backs_off(caplog):
    bus = EventBus("redis://127.0.0.1:1/0", timeout=0.2, cooldown=30)
    seen: list[dict] = []
    bus.subscribe(seen.append)

    await bus.publish({"type": "first"})
    started = time.perf_counter()
    for _ in range(100):
        await bus.publish({"type": "more"})
    elapsed = time.perf_counter() - started
    await bus.close()

    assert len(seen) == 101  # local listeners still get everything
    assert "Redis publish failed" in caplog.text
    assert elapsed < 0.2  # in the cool-down no connection is attempted
    assert await EventBus("redis://127.0.0.1:1/0", timeout=0.2).ping() is False
