"""`crucible compare`: two digits runs side by side with McNemar's exact test; runs on different
classes are refused."""

from __future__ import annotations

import json

import pytest

from crucible.api.result import GateReport, TrainResult
from crucible.cli import main
from crucible.compare import (
    NotComparable,
    comparability_problems,
    decode_outcomes,
    encode_outcomes,
    fingerprint_problems,
    fingerprints_of,
    images_tested,
    mcnemar,
    outcome_test,
    require_comparable,
)
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec

QUICK_GATES = {"debug": {"enabled": False}, "crossValidation": {"enabled": False}}


def test_mcnemar_exact_p_values():
    labels = [0] * 20
    # 10 discordant pairs all one way: p = 2 / 2**10.
    assert mcnemar(labels, [0] * 20, [1] * 10 + [0] * 10).p_value == pytest.approx(2 / 1024)
    # Balanced disagreement, or none at all: no evidence of a difference.
    assert mcnemar(labels, [1] * 5 + [0] * 15, [0] * 5 + [1] * 5 + [0] * 10).p_value == 1.0
    assert mcnemar(labels, labels, labels).p_value == 1.0
    with pytest.raises(ValueError, match="3 labels but 2 and 3 predictions"):
        mcnemar([0, 1, 0], [0, 1], [0, 1, 0])


def test_outcomes_pack_one_bit_per_image_and_sample_large_splits():
    labels = [i % 3 for i in range(10)]
    predictions = [0] * 10  # right on images 0, 3, 6, 9
    outcomes = encode_outcomes(labels, predictions)
    assert outcomes == {"images": 10, "stride": 1, "bits": "kkA="}  # 1001001001 + padding
    assert decode_outcomes(outcomes) == [p == y for p, y in zip(predictions, labels, strict=True)]
    # A split larger than the limit keeps every stride-th image: the same images for every run.
    sampled = encode_outcomes(list(range(25)), list(range(25)), limit=10)
    assert (sampled["images"], sampled["stride"], images_tested(sampled)) == (25, 3, 9)
    assert decode_outcomes(sampled) == [True] * 9


def test_outcome_test_is_mcnemar_on_the_bits():
    labels = [0] * 20
    a, b = [0] * 20, [1] * 10 + [0] * 10
    test = outcome_test(encode_outcomes(labels, a), encode_outcomes(labels, b))
    assert test == mcnemar(labels, a, b)
    with pytest.raises(NotComparable, match="cover different images"):
        outcome_test(encode_outcomes(labels, a), encode_outcomes(labels[:19], a[:19]))
    with pytest.raises(NotComparable, match="no held-out outcomes"):
        outcome_test(None, encode_outcomes(labels, a))


def test_the_termination_message_drops_the_summary_before_folds_and_outcomes():
    classes = [f"class-{i:03d}" for i in range(40)]
    result = TrainResult(
        phase="Succeeded",
        gates={"crossValidation": GateReport(passed=True, folds=[0.9, 0.91, 0.92], mean=0.91, std=0.01)},
        outcomes=encode_outcomes([0] * 360, [0] * 360),
        evaluation={"classes": classes, "f1": [0.5] * 40, "confusion": [[1] * 40] * 40},
    )
    text = result.to_json()
    assert len(text) <= 4096
    document = json.loads(text)
    assert "evaluation" not in document and document["outcomes"]["images"] == 360
    assert document["gates"]["crossValidation"]["folds"] == [0.9, 0.91, 0.92]


def test_cards_on_other_data_classes_or_held_out_splits_are_not_comparable():
    card = {"datasetFingerprint": "d1", "classes": ["0", "1"], "heldOutFingerprint": "h1"}
    assert comparability_problems(card, dict(card)) == []
    other = {"datasetFingerprint": "d2", "classes": ["0", "1", "2"], "heldOutFingerprint": "h2"}
    problems = comparability_problems(card, other)
    assert problems == [
        "dataset fingerprints differ (d1 vs d2)",
        "class lists differ (only in the first: []; only in the second: ['2'])",
        "held-out splits differ (h1 vs h2)",
    ]
    with pytest.raises(NotComparable, match=r"^not comparable: dataset fingerprints differ"):
        require_comparable(card, other)
    # The same decision from the digests a result (and a TrainingRun's status) carries.
    assert fingerprint_problems(fingerprints_of(card), fingerprints_of(dict(card))) == []
    assert [
        p.split(" (")[0] for p in fingerprint_problems(fingerprints_of(card), fingerprints_of(other))
    ] == [
        "dataset fingerprints differ",
        "class lists differ",
        "held-out splits differ",
    ]


def test_compare_two_seeds_prints_a_table_and_a_p_value(digits_artifact, tmp_path, capsys):
    spec = fast_spec(seed=8, gates=QUICK_GATES)
    result = train(spec, RunContext(name="digits-seed8", output_dir=tmp_path / "b", device="cpu"))
    assert result.phase == "Succeeded", result.reason

    card = json.loads((digits_artifact / "model.json").read_text())
    first = json.loads((digits_artifact / "result.json").read_text())
    assert first["fingerprints"] == fingerprints_of(card)
    assert result.fingerprints == first["fingerprints"], "another seed, the same data and held-out split"
    # The result carries what a promotion and a cluster page need without the artifact.
    predictions = json.loads((digits_artifact / "predictions.json").read_text())
    second = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert outcome_test(first["outcomes"], result.outcomes) == mcnemar(
        predictions["labels"], predictions["predictions"], second["predictions"]
    )
    summary = first["evaluation"]
    assert summary["classes"] == card["classes"] and sum(summary["support"]) == 360
    assert summary["f1"][7] == pytest.approx(card["evaluation"]["heldOut"]["perClass"]["7"]["f1"], abs=1e-4)
    assert len(summary["curves"]["epoch"]) == len(summary["curves"]["trainLoss"]) >= 1

    assert main(["compare", str(digits_artifact), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["digits-tiny", "digits-seed8", "B", "-", "A"]
    assert any(row.split()[:3] == ["gate", "debug", "passed"] for row in rows)
    assert any(row.startswith("balancedAccuracy ") for row in rows)
    assert any(row.startswith("f1 '7' ") for row in rows)
    assert "McNemar's exact test on 360 shared held-out images: " in out
    assert " p-value " in out and "at alpha 0.05)" in out


def test_compare_refuses_runs_with_different_class_lists(digits_artifact, tmp_path, capsys):
    spec = fast_spec(dataset={"classes": ["0", "1", "2"]}, gates=QUICK_GATES)
    result = train(spec, RunContext(name="three", output_dir=tmp_path / "three", device="cpu"))
    assert result.phase == "Succeeded", result.reason

    assert main(["compare", str(digits_artifact), str(tmp_path / "three")]) == 1
    error = capsys.readouterr().err
    assert "are not comparable: " in error
    assert (
        "class lists differ (only in the first: ['3', '4', '5', '6', '7', '8', '9']; only in the second: [])"
        in error
    )


def test_compare_refuses_a_directory_without_a_model(tmp_path, capsys):
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "no model.json; only runs that exported a model can be compared" in capsys.readouterr().err


def test_compare_refuses_an_alpha_outside_zero_to_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["compare", str(tmp_path), str(tmp_path), "--alpha", "5"])
    assert stopped.value.code == 2
    assert "argument --alpha: '5' is not a level between 0 and 1 (exclusive)" in capsys.readouterr().err
