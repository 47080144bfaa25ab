"""Dynamic batching: concurrent requests for one model share a forward pass.

Requests queue on the event loop. One worker per model takes what is queued, up to the max batch
size, and runs the forward pass on its own thread, so the event loop keeps reading and answering
requests meanwhile; each caller gets its own rows of the result. A lone one-image request at an idle
model with a fast forward pass runs on the event loop instead: with nothing to overlap, the hand-over
to the thread would only add latency.

When to wait for more: a request that arrives at an idle model runs at once, so a lone client pays
no batching delay. Under load (the previous batch was shared, or a request had to wait for the
worker) the worker holds a batch for companions while they keep coming: it closes the batch when it
is full, when its oldest request has waited `max_delay`, or when no request has arrived for
`quiet` (the burst of clients answered by the previous batch is over; waiting longer would only
delay them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from crucible.server.errors import InferenceFailed, ModelNotReady, Overloaded

log = logging.getLogger(__name__)

Predict = Callable[[list[np.ndarray]], np.ndarray]
# Called with (images in the batch, seconds the forward pass took).
BatchObserver = Callable[[int, float], None]
# Called with the number of images waiting for a forward pass.
DepthObserver = Callable[[int], None]


@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future
    enqueued_at: float
    # True when the worker was running a forward pass as this request arrived: a sign of load.
    arrived_while_busy: bool

    @property
    def count(self) -> int:
        return len(self.images)


def _single_image(batch: list[_Pending]) -> bool:
    """A batch of one request holding one image."""
    return len(batch) == 1 and batch[0].count == 1


_STOP = object()
# A lone one-image request runs its forward pass on the event loop itself when the model's last
# one-image pass took less than this (see `DynamicBatcher._execute`).
INLINE_MAX_S = 0.02
# On a server with one CPU, a batch runs on the event loop when it should take less than this (from the
# last pass's time per image): so a health check waits at most about this long behind one.
INLINE_BATCH_MAX_S = 0.1
# Requests of one burst reach the queue well under a millisecond apart, even when each one's JSON
# takes a few hundred microseconds to decode; a millisecond without one ends the burst.
QUIET_S = 0.001


class DynamicBatcher:
    """One model's queue and inference worker."""

    def __init__(
        self,
        name: str,
        predict: Predict,
        max_batch_size: int = 32,
        max_delay_s: float = 0.005,
        quiet_s: float = QUIET_S,
        on_batch: BatchObserver | None = None,
        on_queue_depth: DepthObserver | None = None,
        max_queue_images: int | None = None,
        one_cpu: bool = False,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_images = max_queue_images
        self.max_delay_s = max_delay_s
        self.quiet_s = quiet_s
        self.one_cpu = one_cpu
        self._predict = predict
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._on_queue_depth = on_queue_depth or (lambda depth: None)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._queued_images = 0
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        self._busy = False
        self._under_load = False
        # Seconds of the last forward pass of a lone one-image request; None before the first.
        self._single_image_seconds: float | None = None
        # Seconds per image of the last forward pass; None before the first.
        self._seconds_per_image: float | None = None

    @property
    def running(self) -> bool:
        return self._accepting and self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        """Start the worker on the running event loop."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{self.name}")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")
        self._accepting = True

    async def stop(self) -> None:
        """Refuse new requests, finish every queued one, then stop the worker."""
        if self._worker is None:
            return
        self._accepting = False
        self._queue.put_nowait(_STOP)
        await self._worker
        self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Queue images [n, ...] and wait for their rows of the model's output."""
        if not self._accepting:
            raise ModelNotReady(self.name)
        limit = self.max_queue_images
        # An empty queue takes any request (one larger than the limit is not refused forever).
        if limit is not None and self._queued_images and self._queued_images + len(images) > limit:
            raise Overloaded(
                f"model {self.name!r} is overloaded: {self._queued_images} images are waiting "
                f"(limit {limit}); retry later"
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(images, loop.create_future(), loop.time(), self._busy)
        self._queue.put_nowait(pending)
        self._set_depth(self._queued_images + pending.count)
        return await pending.future

    def _set_depth(self, depth: int) -> None:
        self._queued_images = depth
        self._on_queue_depth(depth)

    async def _run(self) -> None:
        carried: object = None
        while True:
            first = carried if carried is not None else await self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Pending)
            batch, carried = await self._collect(first)
            await self._execute(batch)

    async def _collect(self, first: _Pending) -> tuple[list[_Pending], object]:
        """A batch starting with `first`; also the item that did not fit, if any, for the next one."""
        loop = asyncio.get_running_loop()
        wait_for_more = self._under_load or first.arrived_while_busy or not self._queue.empty()
        deadline = first.enqueued_at + self.max_delay_s
        batch, size = [first], first.count
        carried: object = None
        while size < self.max_batch_size:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            else:
                remaining = deadline - loop.time()
                if not wait_for_more or remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), min(remaining, self.quiet_s))
                except TimeoutError:
                    break
            if item is _STOP or size + item.count > self.max_batch_size:
                carried = item
                break
            batch.append(item)
            size += item.count
        self._under_load = len(batch) > 1
        self._set_depth(self._queued_images - size)
        return batch, carried

    def _runs_inline(self, batch: list[_Pending], images: int) -> bool:
        """Whether this batch's forward pass runs on the event loop rather than the inference thread.

        Handing a pass to the thread and back costs two thread wake-ups and the GIL changing hands:
        about 0.6 ms of CPU and of latency per request on a 2-core machine, a quarter of a
        mobilenet's forward pass under ONNX Runtime. Under load that is worth paying, since the loop
        reads and decodes the next requests meanwhile; a lone one-image request at an idle model has
        nothing to overlap with. A model whose one-image pass is slow (over INLINE_MAX_S, or not yet
        measured) always uses the thread, so health checks never wait long behind it.

        With one CPU nothing overlaps: the thread and the event loop take turns on the same core, and
        each turn evicts the other's data from its caches. Measured with 32 clients uploading JPEGs
        to a mobilenet under ONNX Runtime, running short batches on the loop instead served 2 to 3%
        more requests for the same CPU."""
        if _single_image(batch):
            seconds = self._single_image_seconds
            return seconds is not None and seconds < INLINE_MAX_S
        per_image = self._seconds_per_image
        return self.one_cpu and per_image is not None and per_image * images < INLINE_BATCH_MAX_S

    async def _execute(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        parts = [p.images for p in batch]
        images = sum(p.count for p in batch)
        self._busy = True
        try:
            if self._runs_inline(batch, images):
                probabilities = self._predict(parts)
            else:
                probabilities = await loop.run_in_executor(self._executor, self._predict, parts)
        except Exception as error:
            log.exception("forward pass of %d images failed", images)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(InferenceFailed(f"inference failed: {error}"))
            return
        finally:
            self._busy = False
        seconds = time.perf_counter() - started
        if _single_image(batch):
            self._single_image_seconds = seconds
        self._seconds_per_image = seconds / images
        self._on_batch(images, seconds)
        offset = 0
        for pending in batch:
            rows = probabilities[offset : offset + pending.count]
            offset += pending.count
            # A caller that went away (client disconnected) has a cancelled future.
            if pending.future.done():
                continue
            if not np.isfinite(rows).all():
                # NaN or infinite probabilities are a broken model, never an answer: a 500 that the
                # error-rate analysis of a canary sees, not a 200 that no one notices.
                bad = int((~np.isfinite(rows)).any(axis=1).sum())
                message = (
                    f"inference failed: the model produced non-finite outputs for {bad} of {len(rows)} images"
                )
                log.error(message)
                pending.future.set_exception(InferenceFailed(message))
            else:
                pending.future.set_result(rows)
