"""A check measures a value and holds it to a threshold; a gate passes when all its checks pass."""

from __future__ import annotations

import math
from collections.abc import Callable

from crucible.api.result import Check, GateReport

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda value, bound: value <= bound,
    "<": lambda value, bound: value < bound,
    ">=": lambda value, bound: value >= bound,
    ">": lambda value, bound: value > bound,
}


def measure(value: float | None, op: str, threshold: float, message: str | None = None) -> Check:
    """A check; a missing or non-finite value never passes. `message` is kept only when it fails."""
    finite = value is not None and math.isfinite(value)
    passed = finite and COMPARISONS[op](value, threshold)
    return Check(
        value=value if finite else None,
        threshold=threshold,
        passed=passed,
        op=op,
        message=None if passed else message,
    )


def gate(checks: dict[str, Check], **extra) -> GateReport:
    return GateReport(passed=all(c.passed for c in checks.values()), checks=checks, **extra)


def failure_reason(name: str, report: GateReport) -> str:
    """`<gate> gate failed: <check>: <what is wrong>`, from the first failed check."""
    for check_name, check in report.checks.items():
        if not check.passed:
            if check.message:
                return f"{name} gate failed: {check_name}: {check.message}"
            value = "not finite" if check.value is None else f"{check.value:.6g}"
            op = getattr(check, "op", "vs")
            return f"{name} gate failed: {check_name} = {value} (must be {op} {check.threshold:g})"
    return f"{name} gate failed"
