"""`crucible compare` by TrainingRun names against the real control plane: two runs whose status is
written as the operator writes it (no training). Their pvc:// artifacts are not reachable from the test,
so the table and McNemar's test come from status, and the output says so; runs whose fingerprints
differ are refused; file:// artifacts on this disk are read instead of status."""

from __future__ import annotations

import json
from pathlib import Path

from crucible.cli import main
from crucible.compare import encode_outcomes
from tests.conftest import FAST_SPEC
from tests.console.test_console_cluster import create_with_status

CLASSES = ["cat", "dog", "fox"]
FINGERPRINTS = {"dataset": "d" * 16, "classes": "c" * 16, "heldOut": "h" * 16}


def status(right: int, f1: list[float], artifact: str, fingerprints: dict = FINGERPRINTS) -> dict:
    """A Succeeded run whose model got the first `right` of 60 held-out images right."""
    return {
        "phase": "Succeeded",
        "gates": {"debug": {"passed": True, "checks": {}}, "baseline": {"passed": True, "checks": {}}},
        "metrics": {"accuracy": right / 60, "balancedAccuracy": right / 60},
        "artifact": {"uri": artifact, "sha256": "a" * 64},
        "fingerprints": fingerprints,
        "outcomes": encode_outcomes([0] * 60, [0] * right + [1] * (60 - right)),
        "evaluation": {
            "classes": CLASSES,
            "precision": f1,
            "recall": f1,
            "f1": f1,
            "support": [20, 20, 20],
            "confusion": [[20, 0, 0], [0, 20, 0], [0, 0, 20]],
        },
    }


def create_run(kube_api, namespace: str, name: str, run_status: dict) -> None:
    create_with_status(kube_api, namespace, "trainingruns", "TrainingRun", name, FAST_SPEC, run_status)


def test_compare_by_name_from_status(kube_api, crucible_crds, namespace, control_plane, capsys) -> None:
    create_run(kube_api, namespace, "older", status(40, [0.6, 0.7, 0.7], "pvc://artifacts/older"))
    create_run(kube_api, namespace, "newer", status(52, [0.9, 0.85, 0.85], "pvc://artifacts/newer"))
    where = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace]

    assert main(["compare", *where, "older", "newer"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "From the TrainingRuns' status: the artifacts of older (pvc://artifacts/older), newer "
        "(pvc://artifacts/newer) are not reachable from here"
    )
    rows = {line.split("  ")[0].strip(): line.split() for line in out.splitlines() if "  " in line}
    assert rows["gate baseline"][-2:] == ["passed", "passed"]
    assert rows["accuracy"][-3:] == ["0.6667", "0.8667", "+0.2000"]
    assert rows["f1 'cat'"][-3:] == ["0.6000", "0.9000", "+0.3000"]
    assert rows["recall 'fox'"][-3:] == ["0.7000", "0.8500", "+0.1500"]
    # 12 images right only by newer, none only by older: p = 2 / 2**12.
    assert (
        "McNemar's exact test on 60 shared held-out images: 0 right only by older, 12 right only by newer; "
        "p-value 0.0004883 (significant at alpha 0.05)" in out
    )


def test_compare_by_name_refuses_runs_on_other_classes(
    kube_api, crucible_crds, namespace, control_plane, capsys
) -> None:
    other = {**FINGERPRINTS, "classes": "e" * 16}
    create_run(kube_api, namespace, "three", status(40, [0.6, 0.7, 0.7], "pvc://artifacts/three"))
    create_run(kube_api, namespace, "other", status(40, [0.6, 0.7, 0.7], "pvc://artifacts/o", other))
    where = ["--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]
    assert main(["compare", *where, "three", "other"]) == 1
    assert f"are not comparable: class lists differ ({'c' * 16} vs {'e' * 16})" in capsys.readouterr().err
    assert main(["compare", *where, "three", "missing"]) == 2
    assert f"TrainingRun {namespace}/missing not found" in capsys.readouterr().err
    create_run(kube_api, namespace, "stopped", {"phase": "Failed", "reason": "baseline gate failed"})
    assert main(["compare", *where, "three", "stopped"]) == 2
    assert "TrainingRun stopped is Failed; only runs that exported a model can be compared" in (
        capsys.readouterr().err
    )


def artifact(directory: Path, name: str, predictions: list[int]) -> str:
    """A run directory as the trainer leaves it, reduced to what a comparison reads."""
    directory.mkdir()
    card = {"name": name, "classes": CLASSES, "datasetFingerprint": "d", "heldOutFingerprint": "h"}
    card["metrics"] = {"accuracy": sum(p == 0 for p in predictions) / len(predictions)}
    (directory / "model.json").write_text(json.dumps(card))
    document = {"labels": [0] * len(predictions), "predictions": predictions}
    (directory / "predictions.json").write_text(json.dumps(document))
    return directory.as_uri()


def test_compare_by_name_reads_reachable_artifacts(
    kube_api, crucible_crds, namespace, control_plane, tmp_path, capsys
) -> None:
    first = artifact(tmp_path / "first", "first", [0] * 10 + [1] * 10)
    second = artifact(tmp_path / "second", "second", [0] * 20)
    create_run(kube_api, namespace, "first", status(40, [0.6, 0.7, 0.7], first))
    create_run(kube_api, namespace, "second", status(40, [0.6, 0.7, 0.7], second))
    where = ["--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]
    assert main(["compare", *where, "first", "second"]) == 0
    out = capsys.readouterr().out
    assert "From the TrainingRuns' status" not in out
    assert "McNemar's exact test on 20 shared held-out images: 0 right only by first, 10 right only" in out
