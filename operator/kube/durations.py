"""Go-style durations (30s, 5m, 1h30m, 500ms), as spec.rollout writes them."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> timedelta:
    """The duration `text` names; ValueError for anything else (the CRD pattern refuses it earlier)."""
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    return timedelta(seconds=sum(int(number) * _UNITS[unit] for number, unit in parts))
