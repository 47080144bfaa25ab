"""A step run every few seconds for each object of a live kopf index, by the operator itself.

Why not a kopf timer (or daemon): kopf puts its finalizer on every object a timer follows, so with the
operator stopped or uninstalled `kubectl delete` of such an object, or of its namespace, hangs. An index
needs no finalizer; the loop that reads it is the operator's own task, started at startup and cancelled
at shutdown. The index says which objects need a step now (its keys are `(namespace, name)`); an object
leaves it as its filter stops matching or as it is deleted.

One step at a time per object (a slow step skips the ticks it overlaps), steps of different objects run
side by side, and a failed step is logged and retried after a back-off that doubles up to a cap.

A step runs in the context kopf indexed its object in (`indexed`), as a kopf timer would: `kopf.event`
finds kopf's queue of Events only there.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

Key = tuple[str, str]
Step = Callable[[str, str], Awaitable[object]]

logger = logging.getLogger(__name__)


def indexed(namespace: str, name: str) -> dict[Key, contextvars.Context]:
    """An index handler's entry for an object to step: its key, and the context kopf handles it in."""
    return {(namespace, name): contextvars.copy_context()}


def _context_of(entry: object) -> contextvars.Context | None:
    """The context an index entry carries (a kopf index holds a collection of values per key)."""
    if isinstance(entry, contextvars.Context):
        return entry.copy()
    if isinstance(entry, Iterable) and not isinstance(entry, str | bytes):
        return next((item.copy() for item in entry if isinstance(item, contextvars.Context)), None)
    return None


@dataclass
class Periodic:
    """`step(namespace, name)` every `interval` seconds for each key of `index` (a live kopf index)."""

    what: str  # for the log: "rollout tick", "tuning step"
    interval: float
    index: Mapping[Key, object]
    step: Step
    backoff: float = 10.0
    max_backoff: float = 300.0
    _running: dict[Key, asyncio.Task] = field(default_factory=dict, init=False)
    _failures: dict[Key, int] = field(default_factory=dict, init=False)
    _due: dict[Key, float] = field(default_factory=dict, init=False)

    def start(self) -> asyncio.Task:
        """The loop as a task of the running event loop; cancelling it cancels the steps under way."""
        return asyncio.create_task(self.run(), name=f"periodic {self.what}")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(self.interval)
                wanted = dict(self.index.items())
                for key in list(self._failures):  # gone from the index: forget its back-off
                    if key not in wanted:
                        self._failures.pop(key, None)
                        self._due.pop(key, None)
                for key in sorted(wanted):
                    if key not in self._running and self._due.get(key, 0.0) <= loop.time():
                        context = _context_of(wanted[key])
                        self._running[key] = asyncio.create_task(self._once(key), context=context)
        finally:
            steps = list(self._running.values())
            for task in steps:
                task.cancel()
            await asyncio.gather(*steps, return_exceptions=True)

    async def _once(self, key: Key) -> None:
        try:
            await self.step(*key)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a failed step must not stop the loop for every other object
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self.backoff * 2 ** (failures - 1), self.max_backoff)
            self._due[key] = asyncio.get_running_loop().time() + delay
            logger.warning(
                "%s of %s/%s failed, again in %.0f s: %s: %s",
                self.what,
                *key,
                delay,
                type(error).__name__,
                error,
            )
        else:
            self._failures.pop(key, None)
            self._due.pop(key, None)
        finally:
            self._running.pop(key, None)
