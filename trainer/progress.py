"""Progress reporting for the trainer: silent by default, progress bars on a terminal, and plain
lines elsewhere (a pod's log), one per stage and per epoch."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

from crucible.api.progress import format_line


class Reporter(Protocol):
    def stage(self, description: str, total: int | None = None) -> None: ...
    def advance(self, detail: str = "") -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class SilentReporter:
    def stage(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, detail: str = "") -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class BarReporter:
    """One rich progress bar per stage, on stderr so `--json` output stays clean."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
        )
        self.progress.start()
        self.task = None

    def stage(self, description: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.update(
                self.task,
                completed=self.progress.tasks[-1].total or 1,
                total=self.progress.tasks[-1].total or 1,
            )
        self.task = self.progress.add_task(description, total=total or 1, detail="")

    def advance(self, detail: str = "") -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, detail=detail)

    def note(self, message: str) -> None:
        self.progress.console.print(message)

    def close(self) -> None:
        if self.task is not None:
            total = self.progress.tasks[-1].total or 1
            self.progress.update(self.task, completed=total)
        self.progress.stop()


class LineReporter:
    """One flushed line per stage, epoch and note, for logs read with `kubectl logs -f`.

    The format is crucible.api.progress's, which the operator parses for status.progress."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.started = time.monotonic()

    def _line(self, text: str) -> None:
        print(format_line(time.monotonic() - self.started, text), file=self.stream, flush=True)

    def stage(self, description: str, total: int | None = None) -> None:
        self._line(f"stage {description}")

    def advance(self, detail: str = "") -> None:
        if detail:
            self._line(detail)

    def note(self, message: str) -> None:
        self._line(message.strip())

    def close(self) -> None:
        pass
