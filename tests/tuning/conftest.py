"""Trials in these tests train on one core: a tiny CNN gains nothing from a second thread, and on a
shared machine two threads per trial wait on each other (3x slower). Results are the same."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def one_core():
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)
