"""Candidate selection: gates, platform minimums, improvement, rejection, approval."""

from __future__ import annotations

import pytest

from crucible.api.modeldeployment import LabelSelector, ModelDeploymentSpec, PromotionSpec
from crucible.compare import encode_outcomes
from crucible.operator.modeldeployment.config import PromotionConfig
from crucible.operator.modeldeployment.rollout.promotion import (
    APPROVE,
    approved,
    beats,
    choose,
    eligibility,
    selects,
)

PLATFORM = PromotionConfig()


def run(name: str, accuracy: float | None, phase: str = "Succeeded", **gates: bool) -> dict:
    gates = gates or {"debug": True, "crossValidation": True}
    return {
        "metadata": {"name": name, "labels": {"model": "digits"}},
        "status": {
            "phase": phase,
            "gates": {gate: {"passed": passed} for gate, passed in gates.items()},
            "metrics": {"accuracy": accuracy, "loss": 1 - (accuracy or 0)},
            "artifact": {"uri": f"pvc://artifacts/{name}", "sha256": "a" * 64},
        },
    }


def test_label_selectors_match_as_kubernetes_does() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"model": "digits"},
            "matchExpressions": [
                {"key": "stage", "operator": "In", "values": ["candidate", "prod"]},
                {"key": "broken", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selects(selector, {"model": "digits", "stage": "prod"})
    assert not selects(selector, {"model": "digits", "stage": "dev"})
    assert not selects(selector, {"model": "digits", "stage": "prod", "broken": "yes"})
    assert not selects(selector, None)


def test_only_a_better_run_by_min_improvement_is_chosen() -> None:
    promotion = PromotionSpec(min_improvement=0.01)
    runs = [run("a", 0.90), run("b", 0.95), run("c", 0.955)]
    choice = choose(runs, "a", 0.90, promotion, PLATFORM)
    assert choice.run == "c" and choice.verdict is not None and choice.verdict.model.training_run == "c"
    choice = choose(runs, "c", 0.955, promotion, PLATFORM)
    assert choice.run is None and choice.reason == "NoImprovement"
    assert choose(runs, None, None, promotion, PLATFORM).run == "c"  # nothing served yet


def test_minimize_direction() -> None:
    promotion = PromotionSpec(metric="loss", direction="minimize")
    assert beats(0.1, 0.2, promotion) and not beats(0.2, 0.1, promotion)
    assert choose([run("a", 0.9), run("b", 0.8)], None, None, promotion, PLATFORM).run == "a"


def test_failed_unrun_and_rejected_runs_are_never_chosen() -> None:
    promotion = PromotionSpec(required_gates=["debug", "drift"])
    assert eligibility(run("x", 0.99), promotion, PLATFORM).reason == "GatesNotPassed"
    failed = run("f", 0.99, phase="Failed", debug=True, crossValidation=False)
    assert eligibility(failed, PromotionSpec(), PLATFORM).reason == "TrainingRunNotSucceeded"
    assert eligibility(run("r", 0.99), PromotionSpec(), PLATFORM, rejected=["r"]).reason == "Rejected"
    choice = choose([failed, run("r", 0.99)], None, None, PromotionSpec(), PLATFORM, rejected=["r"])
    assert choice.run is None and "f: TrainingRunNotSucceeded" in choice.message


def test_the_platform_minimum_cannot_be_loosened() -> None:
    platform = PromotionConfig.model_validate(
        {"requiredGates": ["crossValidation"], "minMetric": {"accuracy": 0.9}}
    )
    # The deployment asks for fewer gates: the platform's are still required.
    lenient = PromotionSpec(required_gates=[])
    without_cv = run("a", 0.95, debug=True)
    assert eligibility(without_cv, lenient, platform).reason == "GatesNotPassed"
    assert eligibility(run("low", 0.85), lenient, platform).reason == "BelowPlatformMinimum"
    assert eligibility(run("ok", 0.92), lenient, platform).eligible


def test_manual_approval_names_the_candidate() -> None:
    assert approved({APPROVE: "b"}, "b")
    assert not approved({APPROVE: "a"}, "b") and not approved(None, "b")


@pytest.mark.parametrize(
    ("model", "error"),
    [({}, "exactly one"), ({"trainingRun": "a", "selector": {}}, "exactly one")],
)
def test_exactly_one_model_source(model: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ModelDeploymentSpec.model_validate({"model": model})


def test_canary_weights_must_not_decrease() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        ModelDeploymentSpec.model_validate(
            {"model": {"trainingRun": "a"}, "rollout": {"steps": [{"weight": 50}, {"weight": 20}]}}
        )


def run_with_fingerprints(name: str, accuracy: float, fingerprints: dict) -> dict:
    body = run(name, accuracy)
    body["status"]["fingerprints"] = fingerprints
    return body


def test_a_candidate_judged_on_other_data_is_not_comparable() -> None:
    same = {"dataset": "d1", "classes": "c1", "heldOut": "h1"}
    other = {**same, "heldOut": "h2"}
    better_elsewhere = run_with_fingerprints("elsewhere", 0.99, other)
    better_here = run_with_fingerprints("here", 0.95, same)
    choice = choose([better_elsewhere], "current", 0.9, PromotionSpec(), PLATFORM, (), same)
    assert choice.run is None and "elsewhere: NotComparable" in choice.message
    choice = choose([better_elsewhere, better_here], "current", 0.9, PromotionSpec(), PLATFORM, (), same)
    assert choice.run == "here"
    # Runs from before results carried fingerprints are compared by their metric alone.
    assert choose([better_elsewhere], "current", 0.9, PromotionSpec(), PLATFORM, (), None).run == "elsewhere"


def run_with_outcomes(name: str, accuracy: float, right: list[int]) -> dict:
    """A run whose exported model got right exactly the held-out images in `right` (of 100)."""
    body = run(name, accuracy)
    body["status"]["outcomes"] = encode_outcomes([1] * 100, [1 if i in right else 0 for i in range(100)])
    return body


SIGNIFICANT = PromotionSpec(require_significance=True, min_improvement=0.01)


def test_require_significance_promotes_a_candidate_that_wins_mcnemar() -> None:
    current = encode_outcomes([1] * 100, [1] * 80 + [0] * 20)  # right on images 0-79
    # The candidate also gets 80-94 right and loses none: 15 discordant pairs all its way, p = 2 / 2**15.
    clear_winner = run_with_outcomes("clear", 0.95, list(range(95)))
    choice = choose([clear_winner], "current", 0.80, SIGNIFICANT, PLATFORM, (), None, current)
    assert choice.run == "clear" and choice.reason == "BetterCandidate"


def test_require_significance_refuses_a_lead_within_chance() -> None:
    current = encode_outcomes([1] * 100, [1] * 80 + [0] * 20)
    # +3 points, but won on 8 images and lost on 5: p = 0.58.
    lucky = run_with_outcomes("lucky", 0.83, [*range(5, 80), *range(80, 88)])
    choice = choose([lucky], "current", 0.80, SIGNIFICANT, PLATFORM, (), None, current)
    assert choice.run is None and choice.reason == "NotSignificant"
    assert choice.message == (
        "lucky beats current but not significantly (McNemar's exact test on 100 shared held-out images: "
        "8 right only by lucky, 5 right only by current, p = 0.5811, not below alpha 0.05)"
    )
    # A looser alpha lets it through; without requireSignificance minImprovement alone decides.
    loose = SIGNIFICANT.model_copy(update={"alpha": 0.6})
    assert choose([lucky], "current", 0.80, loose, PLATFORM, (), None, current).run == "lucky"
    assert choose([lucky], "current", 0.80, PromotionSpec(min_improvement=0.01), PLATFORM).run == "lucky"


def test_require_significance_refuses_runs_without_outcomes() -> None:
    current = encode_outcomes([1] * 100, [1] * 80 + [0] * 20)
    untested = run("old", 0.99)
    choice = choose([untested], "current", 0.80, SIGNIFICANT, PLATFORM, (), None, current)
    assert choice.reason == "NotSignificant"
    assert choice.message.startswith("old cannot be tested against current: no held-out outcomes")
    # Nothing served yet: there is nothing to be significantly better than.
    assert choose([untested], None, None, SIGNIFICANT, PLATFORM).run == "old"


def test_significance_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        PromotionSpec.model_validate({"requireSignificance": True, "alpha": 1.5})
    assert PromotionSpec.model_validate({"requireSignificance": True}).alpha == 0.05


def test_require_significance_refuses_a_candidate_that_gets_fewer_images_right() -> None:
    current = encode_outcomes([1] * 100, [1] * 80 + [0] * 20)
    # Better on its metric (balanced accuracy, say) but right on fewer held-out images than current.
    fewer = run_with_outcomes("fewer", 0.95, list(range(70)))
    choice = choose([fewer], "current", 0.80, SIGNIFICANT, PLATFORM, (), None, current)
    assert choice.reason == "NotSignificant"
    assert choice.message.startswith("fewer is not better than current on the held-out images (")
    assert "0 right only by fewer, 10 right only by current" in choice.message
