"""The operator's own periodic loop over a live index (kube/periodic.py): no cluster, short intervals."""

from __future__ import annotations

import asyncio
import contextvars

from crucible.operator.kube.periodic import Periodic, indexed

TICK = 0.01


async def test_each_indexed_object_is_stepped_until_it_leaves_the_index() -> None:
    index = {("ns", "a"): True, ("ns", "b"): True}
    steps: list[tuple[str, str]] = []

    async def step(namespace: str, name: str) -> None:
        steps.append((namespace, name))

    loop = Periodic("test", TICK, index, step).start()
    await asyncio.sleep(TICK * 10)
    del index[("ns", "a")]
    seen = len(steps)
    await asyncio.sleep(TICK * 10)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)

    assert steps[:seen].count(("ns", "a")) >= 3 and steps[:seen].count(("ns", "b")) >= 3
    assert ("ns", "a") not in steps[seen + 1 :] and steps[seen:].count(("ns", "b")) >= 3


async def test_one_step_at_a_time_per_object_and_others_go_on_meanwhile() -> None:
    index = {("ns", "slow"): True, ("ns", "fast"): True}
    running: dict[str, int] = {"slow": 0, "fast": 0}
    most = {"slow": 0, "fast": 0}
    fast_steps = []

    async def step(namespace: str, name: str) -> None:
        running[name] += 1
        most[name] = max(most[name], running[name])
        await asyncio.sleep(TICK * 8 if name == "slow" else 0)
        if name == "fast":
            fast_steps.append(name)
        running[name] -= 1

    loop = Periodic("test", TICK, index, step).start()
    await asyncio.sleep(TICK * 20)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)

    assert most == {"slow": 1, "fast": 1}
    assert len(fast_steps) >= 2 * most["slow"] + 2  # not held up by the slow one


async def test_a_failing_step_backs_off_and_does_not_stop_the_others() -> None:
    index = {("ns", "broken"): True, ("ns", "fine"): True}
    calls = {"broken": 0, "fine": 0}

    async def step(namespace: str, name: str) -> None:
        calls[name] += 1
        if name == "broken":
            raise RuntimeError("the API server said no")

    loop = Periodic("test", TICK, index, step, backoff=TICK * 8, max_backoff=TICK * 16).start()
    await asyncio.sleep(TICK * 40)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)

    # Tried again after 8, then 16, 16 ... ticks: a handful of times, where the healthy one ran every tick.
    assert calls["broken"] >= 2 and calls["broken"] * 3 <= calls["fine"]


async def test_cancelling_the_loop_cancels_the_steps_under_way() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def step(namespace: str, name: str) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = Periodic("test", TICK, {("ns", "a"): True}, step).start()
    await asyncio.wait_for(started.wait(), 5)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert cancelled.is_set() and loop.cancelled()


HANDLED = contextvars.ContextVar("handled")


async def test_a_step_runs_in_the_context_its_object_was_indexed_in() -> None:
    # What kopf sets while it handles an object (its queue of Events, for kopf.event) and what the index
    # entry keeps: the step sees it, as a kopf timer's handler would.
    def index_handler() -> dict:
        HANDLED.set("ns/a")
        return indexed("ns", "a")

    index = {key: [entry] for key, entry in contextvars.copy_context().run(index_handler).items()}
    seen = []

    async def step(namespace: str, name: str) -> None:
        seen.append(HANDLED.get(None))

    loop = Periodic("test", TICK, index, step).start()
    await asyncio.sleep(TICK * 5)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert seen and set(seen) == {"ns/a"} and HANDLED.get(None) is None
