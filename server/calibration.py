"""The batch size a model serves fastest at, measured at start-up.

A bigger batch is not always cheaper per image. On a CPU, once a batch's activations outgrow the
caches, every layer waits on memory: mobilenet_v3_small at 224 under ONNX Runtime on one core takes
about 2.0 ms an image in batches of 4 to 16 and 2.3 ms in batches of 24 to 32, so a server that
fills batches to 32 under load answers about 15% fewer requests than it could. On a GPU the largest
batch is usually the cheapest and is kept.

So start-up times the forward pass at powers of two up to the configured maximum, and the server
forms batches no larger than the largest size within `TOLERANCE` of the cheapest per image (larger
batches also spread the per-batch work of the server, and the tolerance absorbs timing noise).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# A larger batch is preferred while its time per image is within this share of the cheapest.
TOLERANCE = 0.1
# The sizes are timed in this many interleaved rounds, so that a burst of load from elsewhere slows
# them all alike instead of whichever size ran at that moment; in each round a size runs at least one
# pass and MIN_SECONDS / ROUNDS of cost. Its cost per image is the average over all its passes (one
# pass of a small batch is too short to time against the machine's noise).
ROUNDS = 3
MIN_SECONDS = 0.1
# Wall-clock seconds calibration may take. A model too slow to time every size in it keeps the
# configured maximum: without every size measured there is no evidence for a smaller one.
BUDGET_S = 2.0


@dataclass(frozen=True)
class Calibration:
    """What start-up measured, and the batch size the server forms at most."""

    max_batch_size: int
    # Seconds per image at each batch size measured.
    seconds_per_image: dict[int, float]
    # Why the configured maximum was kept, when it was; empty when the measurement chose.
    kept_because: str = ""


def candidate_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below the maximum, then the maximum itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


def preferred_batch_size(seconds_per_image: dict[int, float], tolerance: float = TOLERANCE) -> int:
    """The largest size whose time per image is within `tolerance` of the cheapest."""
    if not seconds_per_image:
        raise ValueError("no batch size was measured")
    cheapest = min(seconds_per_image.values())
    return max(size for size, seconds in seconds_per_image.items() if seconds <= cheapest * (1 + tolerance))


def calibrate(
    run_batch: Callable[[int], None],
    max_batch_size: int,
    budget_s: float = BUDGET_S,
    rounds: int = ROUNDS,
    min_seconds: float = MIN_SECONDS,
    clock: Callable[[], float] = time.process_time,
    wall_clock: Callable[[], float] = time.perf_counter,
) -> Calibration:
    """Time `run_batch(size)` at every candidate size and choose. Each size's first pass is not
    timed: it is where a runtime allocates and plans for a new shape.

    `clock` measures the cost of a pass. On a CPU it is the process's CPU time: a pod starts while
    others keep the node's cores busy, and wall time would count their turns as this model's (the
    CPU time of every forward thread is also what bounds throughput once the server is saturated).
    On a GPU the CPU mostly waits, and wall time is the cost. The budget is always wall time."""
    started = wall_clock()
    sizes = candidate_sizes(max_batch_size)
    cost = dict.fromkeys(sizes, 0.0)
    images = dict.fromkeys(sizes, 0)
    for round_ in range(rounds + 1):
        for size in sizes:
            if wall_clock() - started > budget_s:
                measured = {size: cost[size] / images[size] for size in sizes if images[size]}
                reason = f"timing every batch size up to {max_batch_size} takes over {budget_s:g} s"
                return Calibration(max_batch_size, measured, reason)
            if round_ == 0:  # the untimed first pass
                run_batch(size)
                continue
            spent, before = 0.0, clock()
            while not spent or spent < min_seconds / rounds:
                run_batch(size)
                images[size] += size
                spent = clock() - before
            cost[size] += spent
    measured = {size: cost[size] / images[size] for size in sizes}
    return Calibration(preferred_batch_size(measured), measured)


def describe(calibration: Calibration) -> str:
    """One log line: the figures and the choice."""
    per_image = calibration.seconds_per_image
    figures = ", ".join(f"{size}: {1000 * seconds:.2f}" for size, seconds in per_image.items())
    choice = f"batches of up to {calibration.max_batch_size}"
    if calibration.kept_because:
        choice += f" (the configured maximum: {calibration.kept_because})"
    return f"ms per image by batch size {{{figures}}}; forming {choice}"
