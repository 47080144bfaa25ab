"""The dynamic batcher, driven with a fake model that records every forward pass."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from crucible.server.batching import DynamicBatcher
from crucible.server.errors import InferenceFailed, ModelNotReady, Overloaded


class RecordingModel:
    """Returns each image's id as its output row; records the ids of every forward pass."""

    def __init__(self, seconds: float = 0.05, fail_when: int | None = None) -> None:
        self.seconds = seconds
        self.fail_when = fail_when
        self.passes: list[list[int]] = []
        self.threads: set[str] = set()

    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        ids = np.concatenate(parts)
        self.passes.append(ids.tolist())
        time.sleep(self.seconds)
        if self.fail_when is not None and self.fail_when in ids:
            raise RuntimeError("out of memory")
        return ids.reshape(-1, 1).astype(np.float32)


def images(*ids: int) -> np.ndarray:
    return np.array(ids)


async def started(model: RecordingModel, **options) -> DynamicBatcher:
    batcher = DynamicBatcher("fake", model.predict, **options)
    await batcher.start()
    return batcher


async def test_requests_arriving_during_a_forward_pass_share_the_next_one():
    model = RecordingModel(seconds=0.05)
    batcher = await started(model, max_batch_size=32, max_delay_s=0.01)
    first = asyncio.create_task(batcher.submit(images(0)))
    await asyncio.sleep(0.01)  # the first forward pass is running
    others = [asyncio.create_task(batcher.submit(images(i))) for i in range(1, 11)]
    await asyncio.gather(first, *others)
    await batcher.stop()
    assert model.passes == [[0], list(range(1, 11))]


async def test_each_caller_gets_its_own_rows_in_order():
    model = RecordingModel(seconds=0.02)
    batcher = await started(model, max_batch_size=32)
    requests = [images(10 * i, 10 * i + 1, 10 * i + 2) for i in range(6)]
    results = await asyncio.gather(*(batcher.submit(r) for r in requests))
    await batcher.stop()
    for request, result in zip(requests, results, strict=True):
        assert result.ravel().tolist() == request.tolist()


async def test_no_forward_pass_exceeds_the_max_batch_size():
    model = RecordingModel(seconds=0.02)
    batcher = await started(model, max_batch_size=4)
    await asyncio.gather(*(batcher.submit(images(i)) for i in range(10)))
    await batcher.stop()
    assert max(len(ids) for ids in model.passes) <= 4
    assert sorted(i for ids in model.passes for i in ids) == list(range(10))


async def test_a_request_larger_than_the_max_batch_size_runs_alone():
    model = RecordingModel(seconds=0.0)
    batcher = await started(model, max_batch_size=2)
    result = await batcher.submit(images(1, 2, 3))
    await batcher.stop()
    assert result.ravel().tolist() == [1, 2, 3]
    assert model.passes == [[1, 2, 3]]


async def test_a_lone_request_at_an_idle_model_does_not_wait_for_the_max_delay():
    model = RecordingModel(seconds=0.0)
    batcher = await started(model, max_batch_size=32, max_delay_s=2.0)
    began = time.perf_counter()
    await batcher.submit(images(1))
    elapsed = time.perf_counter() - began
    await batcher.stop()
    assert elapsed < 1.0


async def test_under_load_a_batch_waits_for_companions_while_they_keep_coming():
    model = RecordingModel(seconds=0.05)
    batcher = await started(model, max_batch_size=32, max_delay_s=0.5, quiet_s=0.2)
    first = asyncio.create_task(batcher.submit(images(0)))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(batcher.submit(images(1)))  # arrives while the model is busy
    await asyncio.sleep(0.1)  # the first pass is over; the second waits for company
    third = asyncio.create_task(batcher.submit(images(2)))
    await asyncio.gather(first, second, third)
    await batcher.stop()
    assert model.passes == [[0], [1, 2]]


async def test_under_load_a_batch_closes_when_arrivals_pause():
    model = RecordingModel(seconds=0.05)
    batcher = await started(model, max_batch_size=32, max_delay_s=0.5, quiet_s=0.02)
    first = asyncio.create_task(batcher.submit(images(0)))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(batcher.submit(images(1)))
    await asyncio.sleep(0.2)  # long after the first pass: the second has gone on its own
    third = asyncio.create_task(batcher.submit(images(2)))
    await asyncio.gather(first, second, third)
    await batcher.stop()
    assert model.passes == [[0], [1], [2]]


async def test_a_batch_never_waits_past_the_max_delay():
    model = RecordingModel(seconds=0.0)
    batcher = await started(model, max_batch_size=32, max_delay_s=0.05, quiet_s=1.0)
    await asyncio.gather(batcher.submit(images(0)), batcher.submit(images(1)))  # a shared batch: under load
    began = time.perf_counter()
    await batcher.submit(images(2))
    waited = time.perf_counter() - began
    await batcher.stop()
    assert 0.04 <= waited < 0.5


async def test_forward_passes_run_on_the_worker_thread_not_the_event_loop():
    model = RecordingModel(seconds=0.03)  # over INLINE_MAX_S: never on the loop
    batcher = await started(model)
    for image in range(3):
        await batcher.submit(images(image))
    await asyncio.gather(*(batcher.submit(images(i)) for i in range(4)))
    await batcher.stop()
    assert model.threads and threading.current_thread().name not in model.threads


async def test_a_lone_image_at_an_idle_fast_model_runs_on_the_event_loop_and_load_goes_to_the_thread():
    model = RecordingModel(seconds=0.0)
    batcher = await started(model)
    await batcher.submit(images(0))  # not measured yet: the thread
    assert threading.current_thread().name not in model.threads
    await batcher.submit(images(1))  # measured fast, alone: the loop itself
    assert threading.current_thread().name in model.threads
    model.threads.clear()
    await asyncio.gather(*(batcher.submit(images(i)) for i in range(2, 6)))  # a shared batch: the thread
    await batcher.submit(images(6, 7))  # one request of two images: the thread
    await batcher.stop()
    assert model.threads and threading.current_thread().name not in model.threads


async def test_with_one_cpu_short_batches_run_on_the_event_loop_and_long_ones_on_the_thread():
    loop_thread = threading.current_thread().name
    model = RecordingModel(seconds=0.004)
    batcher = await started(model, one_cpu=True)

    async def batch_of_four() -> None:
        await asyncio.gather(*(batcher.submit(images(i)) for i in range(4)))

    await batch_of_four()  # not measured yet: the thread
    assert loop_thread not in model.threads
    await batch_of_four()  # measured at about 1 ms an image: 4 ms, on the loop
    assert loop_thread in model.threads
    model.seconds = 0.4
    await batch_of_four()  # still expected short: the loop, measured at 100 ms an image
    model.threads.clear()
    await batch_of_four()  # expected 400 ms, over INLINE_BATCH_MAX_S: the thread
    await batcher.stop()
    assert model.threads and loop_thread not in model.threads


async def test_stop_finishes_every_queued_request_then_refuses_new_ones():
    model = RecordingModel(seconds=0.03)
    batcher = await started(model, max_batch_size=2)
    pending = [asyncio.create_task(batcher.submit(images(i))) for i in range(5)]
    await asyncio.sleep(0)  # all five queued
    await batcher.stop()
    assert [task.result().item() for task in pending] == [0, 1, 2, 3, 4]
    with pytest.raises(ModelNotReady):
        await batcher.submit(images(9))
    assert not batcher.running


async def test_a_failed_forward_pass_fails_its_callers_and_the_worker_carries_on():
    model = RecordingModel(seconds=0.0, fail_when=666)
    batcher = await started(model)
    with pytest.raises(InferenceFailed, match="inference failed: out of memory"):
        await batcher.submit(images(666))
    assert (await batcher.submit(images(1))).item() == 1
    await batcher.stop()


async def test_non_finite_outputs_fail_only_the_requests_they_belong_to():
    model = RecordingModel(seconds=0.05)
    batcher = await started(model, max_batch_size=32, max_delay_s=0.01)
    first = asyncio.create_task(batcher.submit(images(0)))
    await asyncio.sleep(0.01)  # the next three share one forward pass
    nan, good, inf = (
        asyncio.create_task(batcher.submit(x)) for x in (images(np.nan, 1), images(2), images(np.inf))
    )
    await asyncio.wait([first, nan, good, inf])
    await batcher.stop()
    assert [len(ids) for ids in model.passes] == [1, 4]  # one pass for the three
    assert good.result().item() == 2
    with pytest.raises(InferenceFailed, match="non-finite outputs for 1 of 2 images"):
        nan.result()
    with pytest.raises(InferenceFailed, match="non-finite outputs for 1 of 1 images"):
        inf.result()


async def test_observers_see_batch_sizes_and_queue_depth():
    sizes, depths = [], []
    model = RecordingModel(seconds=0.03)
    batcher = DynamicBatcher(
        "fake",
        model.predict,
        max_batch_size=8,
        on_batch=lambda size, seconds: sizes.append(size),
        on_queue_depth=depths.append,
    )
    await batcher.start()
    first = asyncio.create_task(batcher.submit(images(0)))
    await asyncio.sleep(0.01)
    await asyncio.gather(first, *(batcher.submit(images(i, i)) for i in range(1, 4)))
    await batcher.stop()
    assert sizes == [1, 6]
    assert max(depths) == 6 and depths[-1] == 0


async def test_a_full_queue_sheds_load_and_takes_requests_again_once_it_drains():
    model = RecordingModel(seconds=0.1)
    batcher = await started(model, max_batch_size=2, max_queue_images=3)
    first = asyncio.create_task(batcher.submit(images(0)))
    await asyncio.sleep(0.02)  # the first forward pass runs; nothing waits
    waiting = [asyncio.create_task(batcher.submit(images(i))) for i in (1, 2, 3)]
    await asyncio.sleep(0)  # three images wait
    with pytest.raises(Overloaded, match=r"'fake' is overloaded: 3 images are waiting \(limit 3\)"):
        await batcher.submit(images(4))
    await asyncio.gather(first, *waiting)
    assert (await batcher.submit(images(5))).item() == 5
    # An empty queue takes a request larger than the limit: it is never refused forever.
    assert len(await batcher.submit(images(6, 7, 8, 9))) == 4
    await batcher.stop()
