"""The real operator (`crucible operator`'s own entry point) in a thread, stoppable and restartable."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from crucible.operator.command import run_operator

START_TIMEOUT = 30


@dataclass
class OperatorThread:
    kubeconfig: Path
    namespaces: list[str]
    config_path: Path | None = None
    errors: list[BaseException] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event | None = None

    def _main(self, ready: threading.Event) -> None:
        try:
            run_operator(
                namespaces=self.namespaces,
                config_path=str(self.config_path) if self.config_path else None,
                kubeconfig=str(self.kubeconfig),
                liveness=None,
                stop_flag=self._stop,
                ready_flag=ready,
            )
        except BaseException as error:  # reported by the test, not lost in the thread
            self.errors.append(error)
            ready.set()

    async def start(self) -> None:
        ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="operator", daemon=True)
        self._thread.start()
        # Wait without blocking the event loop: the emulator answers the operator from it.
        if not await asyncio.to_thread(ready.wait, START_TIMEOUT) or self.errors:
            raise RuntimeError(f"the operator did not start: {self.errors}")

    async def stop(self) -> None:
        if self._thread is None or self._stop is None:
            return
        self._stop.set()
        await asyncio.to_thread(self._thread.join, START_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop")
        self._thread = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()
