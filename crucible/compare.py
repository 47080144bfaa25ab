"""Fair and significant comparisons of two exported models.

Two runs are comparable only when they saw the same data (dataset fingerprint), predict the same
classes in the same order, and were judged on the same held-out split. Their paired held-out
predictions then go through McNemar's exact test: did the two models disagree on which images they
got right more often than chance allows?

Pure functions of model cards (model.json) and prediction lists, torch-free, so the operator can use
them for promotion; `load_run` and `render` are the thin I/O and display layer for `crucible compare`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.json"
RESULT_FILE = "result.json"
DEFAULT_PREDICTIONS_FILE = "predictions.json"
DEFAULT_ALPHA = 0.05
TABLE_METRICS = (
    "accuracy",
    "balancedAccuracy",
    "macroF1",
    "loss",
    "top5Accuracy",
    "expectedCalibrationError",
    "cvMean",
    "baselineLift",
    "valBalancedAccuracy",
)


class NotComparable(ValueError):
    """The two runs cannot be compared; the message says what differs."""


class RunUnreadable(ValueError):
    """A run directory lacks what a comparison needs."""


def comparability_problems(card_a: dict, card_b: dict) -> list[str]:
    """What differs between two model cards that makes their scores incomparable (empty: comparable)."""
    problems = []
    for key, what in (("datasetFingerprint", "dataset fingerprints"),):
        if card_a.get(key) != card_b.get(key):
            problems.append(f"{what} differ ({card_a.get(key)} vs {card_b.get(key)})")
    classes_a, classes_b = card_a.get("classes"), card_b.get("classes")
    if classes_a != classes_b:
        only_a = [c for c in classes_a or [] if c not in (classes_b or [])]
        only_b = [c for c in classes_b or [] if c not in (classes_a or [])]
        detail = f"only in the first: {only_a}; only in the second: {only_b}" if only_a or only_b else "order"
        problems.append(f"class lists differ ({detail})")
    if card_a.get("heldOutFingerprint") != card_b.get("heldOutFingerprint"):
        first, second = card_a.get("heldOutFingerprint"), card_b.get("heldOutFingerprint")
        problems.append(f"held-out splits differ ({first} vs {second})")
    return problems


def classes_fingerprint(classes: Sequence[str]) -> str:
    """A short digest of the class list, in order (what a TrainingRun's status can carry)."""
    return hashlib.sha256("\0".join(classes).encode()).hexdigest()[:16]


def fingerprints_of(card: dict) -> dict[str, str | None]:
    """The fingerprints a run's result and status carry (`TrainResult.fingerprints`): the three that
    decide comparability, and `training` (every training image, the sources' included), which grows
    with retrains on `spec.dataset.sources` and never makes two runs incomparable."""
    fingerprints = {
        "dataset": card.get("datasetFingerprint"),
        "classes": classes_fingerprint(card.get("classes") or []),
        "heldOut": card.get("heldOutFingerprint"),
    }
    if card.get("trainingFingerprint"):
        fingerprints["training"] = card["trainingFingerprint"]
    return fingerprints


def fingerprint_problems(first: dict, second: dict) -> list[str]:
    """comparability_problems for two `fingerprints` mappings, e.g. two TrainingRuns' statuses: what a
    promotion needs to refuse a candidate as NotComparable without reading either artifact."""
    names = {"dataset": "dataset fingerprints", "classes": "class lists", "heldOut": "held-out splits"}
    return [
        f"{what} differ ({first.get(key)} vs {second.get(key)})"
        for key, what in names.items()
        if first.get(key) is None or first.get(key) != second.get(key)
    ]


def comparable(card_a: dict, card_b: dict) -> bool:
    return not comparability_problems(card_a, card_b)


def require_comparable(card_a: dict, card_b: dict) -> None:
    problems = comparability_problems(card_a, card_b)
    if problems:
        raise NotComparable("not comparable: " + "; ".join(problems))


@dataclass(frozen=True)
class McNemar:
    """Paired outcomes on one held-out set: only the images exactly one model got right count."""

    only_a_right: int
    only_b_right: int
    p_value: float

    def significant(self, alpha: float = DEFAULT_ALPHA) -> bool:
        return self.p_value < alpha


def mcnemar(labels: Sequence[int], predictions_a: Sequence[int], predictions_b: Sequence[int]) -> McNemar:
    """McNemar's exact test (two-sided binomial on the discordant pairs, p = 0.5)."""
    if not len(labels) == len(predictions_a) == len(predictions_b):
        raise ValueError(
            f"mcnemar: {len(labels)} labels but {len(predictions_a)} and {len(predictions_b)} predictions"
        )
    right_a = [p == y for p, y in zip(predictions_a, labels, strict=True)]
    right_b = [p == y for p, y in zip(predictions_b, labels, strict=True)]
    b = sum(1 for x, y in zip(right_a, right_b, strict=True) if x and not y)
    c = sum(1 for x, y in zip(right_a, right_b, strict=True) if y and not x)
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return McNemar(b, c, min(1.0, 2 * tail))


@dataclass
class RunRecord:
    path: Path
    card: dict
    result: dict
    predictions: dict


def load_run(run_dir: Path) -> RunRecord:
    """An exported run's model card, result and held-out predictions."""
    card_path = run_dir / MODEL_FILE
    if not card_path.is_file():
        raise RunUnreadable(f"{run_dir}: no {MODEL_FILE}; only runs that exported a model can be compared")
    card = json.loads(card_path.read_text())
    predictions_path = run_dir / card.get("predictionsFile", DEFAULT_PREDICTIONS_FILE)
    if not predictions_path.is_file():
        raise RunUnreadable(f"{run_dir}: no {predictions_path.name}; the run predates held-out predictions")
    result_path = run_dir / RESULT_FILE
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    return RunRecord(run_dir, card, result, json.loads(predictions_path.read_text()))


@dataclass
class Comparison:
    a: RunRecord
    b: RunRecord
    test: McNemar


def compare(a: RunRecord, b: RunRecord) -> Comparison:
    """NotComparable unless both saw the same data, classes and held-out split (and the same labels)."""
    require_comparable(a.card, b.card)
    if a.predictions["labels"] != b.predictions["labels"]:
        raise NotComparable("not comparable: the held-out labels differ in order or value")
    return Comparison(
        a, b, mcnemar(a.predictions["labels"], a.predictions["predictions"], b.predictions["predictions"])
    )


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "passed" if value else "FAILED"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _delta(x, y) -> str:
    if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
        return f"{y - x:+.4f}"
    return ""


def render(comparison: Comparison, alpha: float = DEFAULT_ALPHA) -> str:
    """The side-by-side table: gates, metrics, per-class F1, then the significance test."""
    a, b = comparison.a, comparison.b
    rows: list[tuple[str, str, str, str]] = [("", a.card.get("name", "A"), b.card.get("name", "B"), "B - A")]
    gates_a, gates_b = a.result.get("gates", {}), b.result.get("gates", {})
    for gate in list(dict.fromkeys([*gates_a, *gates_b])):
        rows.append(
            (
                f"gate {gate}",
                _cell(gates_a.get(gate, {}).get("passed")),
                _cell(gates_b.get(gate, {}).get("passed")),
                "",
            )
        )
    metrics_a, metrics_b = a.card.get("metrics", {}), b.card.get("metrics", {})
    for name in TABLE_METRICS:
        if name in metrics_a or name in metrics_b:
            x, y = metrics_a.get(name), metrics_b.get(name)
            rows.append((name, _cell(x), _cell(y), _delta(x, y)))
    per_a = a.card.get("evaluation", {}).get("heldOut", {}).get("perClass", {})
    per_b = b.card.get("evaluation", {}).get("heldOut", {}).get("perClass", {})
    for name in a.card.get("classes", []):
        x, y = per_a.get(name, {}).get("f1"), per_b.get(name, {}).get("f1")
        rows.append((f"f1 '{name}'", _cell(x), _cell(y), _delta(x, y)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    test = comparison.test
    verdict = "significant" if test.significant(alpha) else "not significant"
    lines += [
        "",
        f"McNemar's exact test on {len(a.predictions['labels'])} shared held-out images: "
        f"{test.only_a_right} right only by {a.card.get('name', 'A')}, {test.only_b_right} right only by "
        f"{b.card.get('name', 'B')}; p-value {test.p_value:.4g} ({verdict} at alpha {alpha:g})",
    ]
    return "\n".join(lines)
