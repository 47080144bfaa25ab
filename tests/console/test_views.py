"""The console's pure parts: figures, label filters, sorting, the fair-comparison rule, trials."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from crucible.compare import encode_outcomes
from crucible.console import pages, views


def run(name: str, fingerprint: str = "aa", classes=("0", "1"), accuracy=0.9, phase="Succeeded", labels=None):
    return {
        "kind": "TrainingRun",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": labels or {},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"model": {"architecture": "tiny_cnn"}},
        "status": {
            "phase": phase,
            "metrics": {"accuracy": accuracy},
            "gates": {
                "crossValidation": {
                    "passed": False,
                    "mean": 0.7,
                    "std": 0.01,
                    "checks": {"mean": {"value": 0.7, "threshold": 0.8, "op": ">=", "passed": False}},
                }
            },
        },
        "card": {"datasetFingerprint": fingerprint, "classes": list(classes)},
    }


def test_figures_read_as_people_read_them():
    assert [views.number(v) for v in (0.942937, 9.96e-08, 1437.0, 0.0, None, 176.113)] == [
        "0.9429",
        "1.0e-07",
        "1437",
        "0",
        "—",
        "176.1",
    ]
    now = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert views.age("2026-01-02T02:59:15Z", now)[1] == "45s"
    assert views.age("2026-01-01T00:00:00Z", now)[1] == "1d"


def test_a_failed_gate_names_its_check_and_threshold():
    [gate] = views.gates_of(run("a"))
    assert (gate.name, gate.passed, gate.failed_checks) == (
        "crossValidation",
        False,
        ["mean 0.7, needs \u2265 0.8"],
    )


def test_label_filters_and_their_errors():
    selector = views.parse_selector("team=vision, crucible.dev/tuning-job")
    assert selector == [("team", "vision"), ("crucible.dev/tuning-job", None)]
    assert views.matches({"team": "vision", "crucible.dev/tuning-job": "s"}, selector)
    assert not views.matches({"team": "audio", "crucible.dev/tuning-job": "s"}, selector)
    with pytest.raises(views.BadQuery, match="label: '=x' is not key or key=value"):
        views.parse_selector("=x")


def test_sorting_keeps_missing_values_last_and_refuses_unknown_keys():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [views.run_row(run(n, accuracy=a), now) for n, a in (("a", 0.5), ("b", None), ("c", 0.9))]
    assert [r["name"] for r in views.sort_rows(rows, "metric", descending=True)] == ["c", "a", "b"]
    with pytest.raises(views.BadQuery, match="sort: 'speed' is not one of name, phase"):
        views.sort_rows(rows, "speed", False)


def test_runs_on_different_data_or_classes_are_not_compared():
    assert views.comparison_refusals([run("a"), run("b")]) == []
    [data] = views.comparison_refusals([run("a"), run("b", fingerprint="bb")])
    assert data == "the runs were evaluated on different data (a: fingerprint aa; b: fingerprint bb)"
    [classes] = views.comparison_refusals([run("a"), run("b", classes=("0", "1", "2"))])
    assert classes == "the runs have different classes (a: 0, 1; b: 0, 1, 2)"
    assert views.comparison_refusals([run("a")]) == ["choose two or more runs to compare"]


def test_metric_deltas_are_from_the_first_run():
    [(name, values, deltas)] = views.metric_table([run("a", accuracy=0.9), run("b", accuracy=0.95)])
    assert (name, values, deltas[0], round(deltas[1], 6)) == ("accuracy", [0.9, 0.95], 0.0, 0.05)


def test_trials_on_a_cluster_come_from_the_child_runs():
    job = {
        "kind": "TuningJob",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"objective": {"metric": "accuracy", "direction": "maximize"}},
        "status": {},
    }
    children = [
        run(
            "s-trial-001",
            accuracy=0.8,
            labels={"crucible.dev/tuning-job": "s", "crucible.dev/trial-number": "1"},
        ),
        run(
            "s-trial-000",
            accuracy=0.7,
            labels={"crucible.dev/tuning-job": "s", "crucible.dev/trial-number": "0"},
        ),
        run(
            "s-trial-002",
            phase="Running",
            labels={"crucible.dev/tuning-job": "s", "crucible.dev/trial-number": "2"},
        ),
        run("other"),
        {
            **run("s-trial-000", labels={"crucible.dev/tuning-job": "s", "crucible.dev/trial-number": "0"}),
            "metadata": {
                "name": "s-trial-000",
                "namespace": "elsewhere",
                "labels": {"crucible.dev/tuning-job": "s", "crucible.dev/trial-number": "0"},
            },
        },
    ]
    trials = views.trials_of(job, children)
    assert [(t["number"], t["state"], t["value"]) for t in trials] == [
        (0, "COMPLETE", 0.7),
        (1, "COMPLETE", 0.8),
        (2, "RUNNING", None),
    ]
    assert views.best_so_far(trials, maximize=True) == [0.7, 0.8, 0.8]


def evaluated(name: str, right: int, f1: list[float], held_out: str = "h1") -> dict:
    """A run as its status reads once the operator copied the result: fingerprints, outcome bits over
    40 held-out images (the first `right` right), and the per-class summary."""
    body = run(name)
    body["card"] = None
    body["status"]["fingerprints"] = {"dataset": "d1", "classes": "c1", "heldOut": held_out}
    body["status"]["outcomes"] = encode_outcomes([0] * 40, [0] * right + [1] * (40 - right))
    body["status"]["evaluation"] = {
        "classes": ["0", "1"],
        "precision": f1,
        "recall": f1,
        "f1": f1,
        "support": [20, 20],
        "confusion": [[18, 2], [3, 17]],
        "curves": {"epoch": [1, 2], "trainLoss": [0.9, 0.4], "valAccuracy": [0.7, 0.85]},
    }
    return body


def test_fingerprints_decide_the_fair_comparison_rule():
    assert views.comparison_refusals([evaluated("a", 30, [0.7, 0.8]), evaluated("b", 35, [0.9, 0.8])]) == []
    [refusal] = views.comparison_refusals(
        [evaluated("a", 30, [0.7, 0.8]), evaluated("b", 30, [0.7, 0.8], "h2")]
    )
    assert refusal == "the runs were evaluated on different data (a vs b: held-out splits differ (h1 vs h2))"


def test_the_compare_page_shows_per_class_deltas_and_mcnemar():
    runs = [evaluated("a", 30, [0.7, 0.8]), evaluated("b", 38, [0.9, 0.75])]
    html = pages.compare_page(runs, [])
    text = re.sub(r"<[^>]+>", " ", html)
    text = re.sub(r"\s+", " ", text)
    assert "b vs a: on 40 shared held-out images, 8 right only by b, 0 right only by a; p = 0.007812" in text
    assert "F1 0.7 Precision 0.7 Recall 0.7 F1 0.9 (+0.2) Precision 0.9 (+0.2) Recall 0.9 (+0.2)" in text
    assert "F1 0.75 (-0.05)" in text


def test_a_run_page_without_report_draws_from_the_result():
    html = pages.run_page(evaluated("a", 30, [0.7, 0.8]), [], False, [])
    assert "Drawn from the run's result" in html
    assert 'aria-label="loss of the final fit by epoch"' in html
    assert 'aria-label="accuracy of the final fit by epoch"' in html
    assert "<title>true 1, predicted 0: 3</title>" in html
