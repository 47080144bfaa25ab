"""Pure functions from resource-shaped dicts to what the pages show: rows, gate verdicts, comparisons.
No I/O and no HTML here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from crucible.compare import fingerprint_problems, fingerprints_of

GATE_ORDER = ("debug", "crossValidation", "overfitting")
OPS = {"<=": "\u2264", ">=": "\u2265", "<": "<", ">": ">", "==": "="}
SORT_KEYS = ("name", "phase", "architecture", "cv", "metric", "age")
LIVE_PHASES = ("Pending", "Running")


class BadQuery(ValueError):
    """A query parameter the page cannot use; the message names it and the allowed values."""


def number(value: object) -> str:
    """Figures as people read them: 0.942937 -> 0.9429, 9.96e-08 -> 1.0e-07, 1437.0 -> 1437."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return (
        f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.3f}".rstrip("0").rstrip(".")
    )


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(text: str | None, now: datetime) -> tuple[float, str]:
    """Seconds since `text` and the short form kubectl prints (45s, 3m, 2h, 5d)."""
    moment = parse_time(text)
    if moment is None:
        return (math.inf, "—")
    seconds = max(0.0, (now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return (seconds, f"{int(seconds // size)}{unit}")
    return (seconds, f"{int(seconds)}s")


def check_text(name: str, check: dict) -> str:
    """'mean 0.72, needs ≥ 0.8'."""
    op = OPS.get(str(check.get("op")), check.get("op") or "vs")
    return f"{name} {number(check.get('value'))}, needs {op} {number(check.get('threshold'))}"


@dataclass
class GateVerdict:
    name: str
    passed: bool
    failed_checks: list[str] = field(default_factory=list)


def gates_of(run: dict) -> list[GateVerdict]:
    gates = (run.get("status") or {}).get("gates") or {}
    names = [name for name in GATE_ORDER if name in gates] + [
        name for name in gates if name not in GATE_ORDER
    ]
    verdicts = []
    for name in names:
        gate = gates[name] or {}
        failed = [
            check_text(check, data)
            for check, data in (gate.get("checks") or {}).items()
            if not data.get("passed", True)
        ]
        verdicts.append(GateVerdict(name, bool(gate.get("passed")), failed))
    return verdicts


def architecture_of(run: dict) -> str:
    card = run.get("card") or {}
    return card.get("architecture") or ((run.get("spec") or {}).get("model") or {}).get("architecture") or "—"


def cv_of(run: dict) -> tuple[float | None, float | None]:
    gate = ((run.get("status") or {}).get("gates") or {}).get("crossValidation") or {}
    return gate.get("mean"), gate.get("std")


HELD_OUT_METRIC = "accuracy"


def run_row(run: dict, now: datetime) -> dict:
    metadata = run["metadata"]
    status = run.get("status") or {}
    mean, std = cv_of(run)
    seconds, age_text = age(metadata.get("creationTimestamp"), now)
    return {
        "name": metadata["name"],
        "namespace": metadata["namespace"],
        "labels": metadata.get("labels") or {},
        "phase": status.get("phase") or "Pending",
        "reason": status.get("reason") or "",
        "architecture": architecture_of(run),
        "gates": gates_of(run),
        "cv_mean": mean,
        "cv_std": std,
        "metric": (status.get("metrics") or {}).get(HELD_OUT_METRIC),
        "age_seconds": seconds,
        "age": age_text,
    }


def parse_selector(text: str) -> list[tuple[str, str | None]]:
    """'team=vision,stage' -> [("team", "vision"), ("stage", None)] (None: the label exists)."""
    terms = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        key, _, value = part.partition("=")
        key = key.strip().rstrip("=")
        if not key or part.startswith("="):
            raise BadQuery(
                f"label: {part!r} is not key or key=value (e.g. team=vision,crucible.dev/tuning-job)"
            )
        terms.append((key, value.strip() if "=" in part else None))
    return terms


def matches(labels: dict[str, str], selector: list[tuple[str, str | None]]) -> bool:
    return all(key in labels and (value is None or labels[key] == value) for key, value in selector)


def sort_rows(rows: list[dict], key: str, descending: bool) -> list[dict]:
    if key not in SORT_KEYS:
        raise BadQuery(f"sort: {key!r} is not one of {', '.join(SORT_KEYS)}")
    field_of = {"cv": "cv_mean", "age": "age_seconds"}.get(key, key)
    present = [row for row in rows if row[field_of] is not None]
    missing = [row for row in rows if row[field_of] is None]  # always last
    return sorted(present, key=lambda row: row[field_of], reverse=descending) + missing


def is_live(item: dict) -> bool:
    """Whether the object is still changing: the page keeps refreshing while it is."""
    status = item.get("status") or {}
    if item["kind"] == "TrainingRun":
        return (status.get("phase") or "Pending") in LIVE_PHASES
    if item["kind"] == "TuningJob":
        return status.get("phase") in (None, "Running")
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return bool(status.get("canary")) or conditions.get("Progressing") == "True"


# Comparing runs: only runs of the same data and classes compare fairly.


def dataset_identity(run: dict) -> str:
    card = run.get("card") or {}
    if card.get("datasetFingerprint"):
        return f"fingerprint {card['datasetFingerprint']}"
    dataset = (run.get("spec") or {}).get("dataset") or {}
    keys = (
        "source",
        "uri",
        "classes",
        "sampleFraction",
        "perClassLimit",
        "balance",
        "testFraction",
        "imageSize",
    )
    return "dataset " + ", ".join(f"{key}={dataset.get(key)}" for key in keys if dataset.get(key) is not None)


def classes_of(run: dict) -> list[str] | None:
    card = run.get("card") or {}
    return card.get("classes") or ((run.get("spec") or {}).get("dataset") or {}).get("classes") or None


def fingerprints_of_run(run: dict) -> dict | None:
    """The run's dataset, classes and held-out digests: from status (as the operator copies them from
    the result), else from its model card; None for a run from before they were recorded."""
    recorded = (run.get("status") or {}).get("fingerprints")
    if recorded:
        return recorded
    card = run.get("card") or {}
    return (
        fingerprints_of(card) if card.get("datasetFingerprint") and card.get("heldOutFingerprint") else None
    )


def comparison_refusals(runs: list[dict]) -> list[str]:
    """Why these runs cannot be compared fairly (empty: they can)."""
    if len(runs) < 2:
        return ["choose two or more runs to compare"]
    refusals = []
    prints = [fingerprints_of_run(run) for run in runs]
    if all(prints):
        first = runs[0]["metadata"]["name"]
        for run, other in zip(runs[1:], prints[1:], strict=True):
            problems = fingerprint_problems(prints[0], other)  # type: ignore[arg-type]
            if problems:
                refusals.append(
                    f"the runs were evaluated on different data ({first} vs {run['metadata']['name']}: "
                    f"{'; '.join(problems)})"
                )
        classes = {run["metadata"]["name"]: classes_of(run) for run in runs}
        if refusals and len({tuple(value) for value in classes.values() if value}) > 1:
            listed = "; ".join(f"{name}: {', '.join(value or ['?'])}" for name, value in classes.items())
            refusals.append(f"the runs have different classes ({listed})")
        return refusals
    identities = {run["metadata"]["name"]: dataset_identity(run) for run in runs}
    if len(set(identities.values())) > 1:
        listed = "; ".join(f"{name}: {identity}" for name, identity in identities.items())
        refusals.append(f"the runs were evaluated on different data ({listed})")
    classes = {run["metadata"]["name"]: classes_of(run) for run in runs}
    if len({tuple(value) for value in classes.values() if value}) > 1:
        listed = "; ".join(f"{name}: {', '.join(value or ['?'])}" for name, value in classes.items())
        refusals.append(f"the runs have different classes ({listed})")
    return refusals


def metric_table(runs: list[dict]) -> list[tuple[str, list[float | None], list[float | None]]]:
    """(metric, value per run, difference from the first run) for every metric any run has."""
    names: list[str] = []
    for run in runs:
        for name in (run.get("status") or {}).get("metrics") or {}:
            if name not in names:
                names.append(name)
    table = []
    for name in names:
        values = [((run.get("status") or {}).get("metrics") or {}).get(name) for run in runs]
        base = values[0]
        deltas = [None if base is None or value is None else value - base for value in values]
        table.append((name, values, deltas))
    return table


def check_table(runs: list[dict]) -> list[tuple[str, str, list[dict | None]]]:
    """(gate, check, that check per run) for every check any run made."""
    rows: list[tuple[str, str]] = []
    for run in runs:
        for gate, report in ((run.get("status") or {}).get("gates") or {}).items():
            for check in (report or {}).get("checks") or {}:
                if (gate, check) not in rows:
                    rows.append((gate, check))
    order = {name: index for index, name in enumerate(GATE_ORDER)}
    rows.sort(key=lambda pair: order.get(pair[0], len(order)))
    return [
        (
            gate,
            check,
            [
                (((run.get("status") or {}).get("gates") or {}).get(gate) or {}).get("checks", {}).get(check)
                for run in runs
            ],
        )
        for gate, check in rows
    ]


def trials_of(job: dict, runs: list[dict]) -> list[dict]:
    """A TuningJob's trials, by number: from status.trials where the source keeps them (local), else
    from its child TrainingRuns (their labels and the objective's metric)."""
    status = job.get("status") or {}
    if status.get("trials"):
        return sorted(status["trials"], key=lambda trial: trial["number"])
    metric = ((job.get("spec") or {}).get("objective") or {}).get("metric", HELD_OUT_METRIC)
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    trials = []
    for run in runs:
        labels = run["metadata"].get("labels") or {}
        if labels.get("crucible.dev/tuning-job") != name or run["metadata"]["namespace"] != namespace:
            continue
        run_status = run.get("status") or {}
        phase = run_status.get("phase") or "Pending"
        state = {"Succeeded": "COMPLETE", "Failed": "FAIL", "Running": "RUNNING"}.get(phase, "WAITING")
        number_label = labels.get("crucible.dev/trial-number", "")
        trials.append(
            {
                "number": int(number_label) if number_label.isdigit() else len(trials),
                "state": state,
                "value": (run_status.get("metrics") or {}).get(metric) if state == "COMPLETE" else None,
                "params": {},
                "trainingRun": run["metadata"]["name"],
            }
        )
    return sorted(trials, key=lambda trial: trial["number"])


def best_so_far(trials: list[dict], maximize: bool) -> list[float | None]:
    """The best value among the trials up to each one (None until one completed)."""
    best: float | None = None
    curve = []
    for trial in trials:
        value = trial.get("value") if trial.get("state") == "COMPLETE" else None
        if value is not None and (best is None or (value > best if maximize else value < best)):
            best = value
        curve.append(best)
    return curve
