"""Which TrainingRun a ModelDeployment should serve next, and whether it may (pure).

A candidate is eligible when it Succeeded, passed every required gate (spec.promotion.requiredGates,
or every gate it had, plus the platform's gates from the operator configuration), meets the
platform's minimum metrics, and was not rolled back before. It is chosen when it beats the current
model's metric by minImprovement in the spec's direction. The platform's minimums can only be
tightened by a ModelDeployment: its own list adds gates, never removes the platform's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crucible import API_GROUP
from crucible.api.modeldeployment import LabelSelector, PromotionSpec
from crucible.compare import NotComparable, fingerprint_problems, images_tested, outcome_test
from crucible.operator.modeldeployment.config import PromotionConfig
from crucible.operator.modeldeployment.status import Verdict, judge

# An annotation is metadata: Argo CD and Flux compare spec, so approving leaves the Git copy in sync
# (or the annotation can be committed to Git itself).
APPROVE = f"{API_GROUP}/approve"


def selects(selector: LabelSelector, labels: dict[str, str] | None) -> bool:
    """Whether a Kubernetes label selector matches these labels."""
    labels = labels or {}
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for rule in selector.match_expressions:
        present = rule.key in labels
        if rule.operator == "Exists" and not present:
            return False
        if rule.operator == "DoesNotExist" and present:
            return False
        if rule.operator == "In" and labels.get(rule.key) not in rule.values:
            return False
        if rule.operator == "NotIn" and present and labels[rule.key] in rule.values:
            return False
    return True


def metric_of(run: dict | None, metric: str) -> float | None:
    value = (((run or {}).get("status") or {}).get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def required_gates(run: dict, promotion: PromotionSpec, platform: PromotionConfig) -> list[str]:
    ran = list((run.get("status") or {}).get("gates") or {})
    own = promotion.required_gates if promotion.required_gates is not None else ran
    return sorted(set(own) | set(platform.required_gates))


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    reason: str
    message: str
    verdict: Verdict | None = None
    value: float | None = None


NOT_COMPARABLE = "NotComparable"
NOT_SIGNIFICANT = "NotSignificant"


def eligibility(
    run: dict, promotion: PromotionSpec, platform: PromotionConfig, rejected: Iterable[str] = ()
) -> Eligibility:
    """Whether `run` may be promoted at all, whatever is served now."""
    name = run["metadata"]["name"]
    if name in set(rejected):
        return Eligibility(False, "Rejected", f"{name} was rolled back before and is not retried")
    verdict = judge(run, name)
    if not verdict.servable:
        return Eligibility(False, verdict.reason, verdict.message)
    gates = (run.get("status") or {}).get("gates") or {}
    missing = [
        gate for gate in required_gates(run, promotion, platform) if not (gates.get(gate) or {}).get("passed")
    ]
    if missing:
        return Eligibility(False, "GatesNotPassed", f"{name} did not run or pass: {', '.join(missing)}")
    for metric, floor in sorted(platform.min_metric.items()):
        value = metric_of(run, metric)
        if value is None or value < floor:
            return Eligibility(
                False, "BelowPlatformMinimum", f"{name}: {metric} {value} < {floor} (platform)"
            )
    value = metric_of(run, promotion.metric)
    if value is None:
        return Eligibility(False, "MetricMissing", f"{name} reports no {promotion.metric}")
    return Eligibility(True, "Eligible", f"{name}: {promotion.metric} {value}", verdict, value)


def beats(value: float, current: float | None, promotion: PromotionSpec) -> bool:
    """Whether `value` improves on `current` by at least minImprovement (anything beats no value)."""
    if current is None:
        return True
    gain = value - current if promotion.direction == "maximize" else current - value
    return gain >= promotion.min_improvement and gain > 0


@dataclass(frozen=True)
class Choice:
    """The run to promote (None: keep what runs) and why, for status."""

    run: str | None
    reason: str
    message: str
    verdict: Verdict | None = None


def choose(
    runs: Iterable[dict],
    current: str | None,
    current_value: float | None,
    promotion: PromotionSpec,
    platform: PromotionConfig,
    rejected: Iterable[str] = (),
    current_fingerprints: dict | None = None,
    current_outcomes: dict | None = None,
) -> Choice:
    """The best eligible run, when it beats the current model; on a tie the first by name stays. A run
    trained or judged on other data, classes or held-out split than the current model is NotComparable:
    its metric says nothing about which model is better. (Runs from before results carried
    fingerprints are compared by their metric alone.) With promotion.requireSignificance the best
    candidate must also beat the current model in McNemar's exact test on their held-out outcomes."""
    rejected = list(rejected)
    best: Eligibility | None = None
    best_name = None
    best_outcomes = None
    refused = []
    for run in sorted(runs, key=lambda item: item["metadata"]["name"]):
        name = run["metadata"]["name"]
        if name == current:
            continue
        verdict = eligibility(run, promotion, platform, rejected)
        theirs = (run.get("status") or {}).get("fingerprints")
        if verdict.eligible and current_fingerprints and theirs:
            problems = fingerprint_problems(current_fingerprints, theirs)
            if problems:
                verdict = Eligibility(False, NOT_COMPARABLE, f"{name}: {'; '.join(problems)}")
        if not verdict.eligible:
            refused.append(f"{name}: {verdict.reason}")
            continue
        assert verdict.value is not None
        # Among candidates the better metric wins outright; minImprovement is held against the current.
        if best is None or beats(
            verdict.value, best.value, promotion.model_copy(update={"min_improvement": 0})
        ):
            best, best_name = verdict, name
            best_outcomes = (run.get("status") or {}).get("outcomes")
    if best is None or best_name is None:
        why = "; ".join(refused) or "no other candidate"
        return Choice(None, "NoEligibleCandidate", why)
    assert best.value is not None
    if current is not None and not beats(best.value, current_value, promotion):
        return Choice(
            None,
            "NoImprovement",
            f"best candidate {best_name} ({promotion.metric} {best.value}) does not beat {current} "
            f"({current_value}) by {promotion.min_improvement}",
        )
    if current is not None and promotion.require_significance:
        refusal = significance_refusal(best_name, best_outcomes, current, current_outcomes, promotion)
        if refusal:
            return Choice(None, NOT_SIGNIFICANT, refusal)
    return Choice(best_name, "BetterCandidate", best.message, best.verdict)


def significance_refusal(
    candidate: str,
    outcomes: dict | None,
    current: str,
    current_outcomes: dict | None,
    promotion: PromotionSpec,
) -> str | None:
    """Why the candidate's lead over the current model is not significant (None: it is). Only images
    exactly one of the two got right count; the candidate must win most of them, and by p < alpha."""
    try:
        test = outcome_test(current_outcomes, outcomes)
    except NotComparable as error:
        return f"{candidate} cannot be tested against {current}: {error}"
    tested = images_tested(outcomes or {})
    figures = (
        f"McNemar's exact test on {tested} shared held-out images: {test.only_b_right} right only by "
        f"{candidate}, {test.only_a_right} right only by {current}, p = {test.p_value:.4g}"
    )
    if test.only_b_right <= test.only_a_right:
        return f"{candidate} is not better than {current} on the held-out images ({figures})"
    if not test.significant(promotion.alpha):
        return (
            f"{candidate} beats {current} but not significantly "
            f"({figures}, not below alpha {promotion.alpha:g})"
        )
    return None


def approved(annotations: dict[str, str] | None, candidate: str) -> bool:
    """Manual policy: a person (or Git) approved exactly this candidate."""
    return (annotations or {}).get(APPROVE) == candidate
