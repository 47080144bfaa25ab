"""How much CPU this process may really use: the cgroup quota, not the host's core count."""

from __future__ import annotations

import math
import os
from pathlib import Path


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, or v1 CFS quota); None when unlimited."""
    v2 = root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if v1_quota.is_file():
            quota_us = int(v1_quota.read_text())
            return None if quota_us <= 0 else quota_us / int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return None


def available_cpus(root: Path = Path("/sys/fs/cgroup")) -> int:
    """Whole CPUs to size thread pools by: min(affinity, cgroup quota rounded up), at least 1."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(limit)))
