"""Start-up batch size calibration: timing the forward pass at each candidate size and choosing."""

from __future__ import annotations

import pytest

from crucible.server.calibration import (
    Calibration,
    calibrate,
    candidate_sizes,
    describe,
    preferred_batch_size,
)


class FakeForward:
    """A forward pass whose cost per image depends on the batch size, on a clock it advances itself."""

    def __init__(self, ms_per_image: dict[int, float]) -> None:
        self.ms_per_image = ms_per_image
        self.now = 0.0
        self.sizes: list[int] = []

    def clock(self) -> float:
        return self.now

    def run(self, size: int) -> None:
        self.sizes.append(size)
        self.now += size * self.ms_per_image[size] / 1000


def test_candidates_are_powers_of_two_then_the_maximum():
    assert candidate_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert candidate_sizes(12) == [1, 2, 4, 8, 12]
    assert candidate_sizes(1) == [1]


def test_the_largest_size_within_the_tolerance_of_the_cheapest_is_preferred():
    # mobilenet_v3_small at 224 under ONNX Runtime on one core, as measured
    measured = {1: 2.14, 2: 2.04, 4: 1.99, 8: 1.98, 16: 2.17, 32: 2.33}
    assert preferred_batch_size(measured, tolerance=0.1) == 16
    assert preferred_batch_size(measured, tolerance=0.05) == 8
    # on a GPU the largest is the cheapest
    assert preferred_batch_size({1: 1.0, 8: 0.2, 32: 0.05}) == 32
    with pytest.raises(ValueError, match="no batch size"):
        preferred_batch_size({})


def test_a_cpu_whose_large_batches_are_slower_per_image_gets_a_smaller_maximum():
    forward = FakeForward({1: 3.0, 2: 2.5, 4: 2.1, 8: 2.0, 16: 2.5, 32: 2.6})
    calibration = calibrate(forward.run, 32, clock=forward.clock, wall_clock=forward.clock)
    assert calibration.max_batch_size == 8
    assert not calibration.kept_because
    assert calibration.seconds_per_image[32] == pytest.approx(0.0026)
    assert "forming batches of up to 8" in describe(calibration)


def test_each_size_is_warmed_up_untimed_then_timed_in_interleaved_rounds_long_enough_to_average_out_noise():
    forward = FakeForward({1: 10.0, 2: 10.0})
    calibrate(forward.run, 2, rounds=2, min_seconds=0.06, clock=forward.clock, wall_clock=forward.clock)
    # one untimed pass each; then per round 30 ms of each: three passes of size 1, two of size 2
    assert forward.sizes == [1, 2] + ([1] * 3 + [2] * 2) * 2


def test_a_model_too_slow_to_time_every_size_in_the_budget_keeps_the_configured_maximum():
    forward = FakeForward({1: 400.0, 2: 300.0, 4: 300.0, 8: 300.0})
    calibration = calibrate(forward.run, 8, budget_s=2.0, clock=forward.clock, wall_clock=forward.clock)
    assert calibration.max_batch_size == 8
    assert "takes over 2 s" in calibration.kept_because
    assert 8 not in calibration.seconds_per_image
    assert "the configured maximum" in describe(calibration)


def test_the_cost_clock_and_the_budget_clock_are_separate():
    # CPU time (the cost) barely moves while the wall clock runs out: the budget is wall time.
    forward = FakeForward({1: 1.0, 2: 1.0, 4: 1.0})
    wall = iter([0.0, 1.0, 1.0, 1.0, 1.0, 3.0])  # start, before the untimed passes, before timing size 1, 2
    calibration = calibrate(forward.run, 4, budget_s=2.0, clock=forward.clock, wall_clock=lambda: next(wall))
    assert calibration == Calibration(
        4, {1: pytest.approx(0.001)}, "timing every batch size up to 4 takes over 2 s"
    )
