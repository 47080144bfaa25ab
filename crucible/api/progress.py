"""The trainer's progress lines: what `kubectl logs -f` shows of a run, in a form the operator can
turn into `status.progress` without importing the trainer.

The trainer prints one line per stage and per epoch to stdout (no terminal needed):

    [   3.1s] stage Cross-validation
    [  40.6s] fold 2/5 epoch 3/8 loss 0.4100 acc 0.8800 212 img/s
    [  95.0s] stage Final training
    [ 120.2s] final epoch 3/20 loss 0.2100 acc 0.9400 230 img/s validation loss 0.2500 acc 0.9300

Other lines (notes: skipped files, finished folds, resuming) may come between them.
"""

from __future__ import annotations

import re

_LINE = re.compile(
    r"^\[\s*(?P<elapsed>\d+(?:\.\d+)?)s\] "
    r"(?:stage (?P<stage>.+)"
    r"|(?:fold (?P<fold>\d+/\d+) |final )epoch (?P<epoch>\d+/\d+)(?P<rest>.*))$"
)


def format_line(elapsed_seconds: float, text: str) -> str:
    return f"[{elapsed_seconds:7.1f}s] {text}"


def progress_of(log: str) -> dict[str, str] | None:
    """The run's progress from (the tail of) its log: the last stage, and its last epoch line.

    {"stage": "Cross-validation", "fold": "2/5", "epoch": "3/8", "line": "fold 2/5 epoch 3/8 ..."};
    None when the log holds no progress line yet."""
    progress: dict[str, str] = {}
    for line in log.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        if match["stage"]:
            progress = {"stage": match["stage"]}
            continue
        progress = {"stage": progress.get("stage", ""), "epoch": match["epoch"]}
        if match["fold"]:
            progress["fold"] = match["fold"]
        progress["line"] = line.split("] ", 1)[1]
    return progress or None
