"""The Argo CD health checks (Lua), run as Argo CD runs them: `obj` is the live resource, the script
returns {status, message}."""

from __future__ import annotations

from pathlib import Path

import pytest

lupa = pytest.importorskip("lupa")

SCRIPTS = Path(__file__).resolve().parents[2] / "integrations" / "argocd"


def health(kind: str, obj: dict) -> tuple[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: object) -> object:
        if isinstance(value, dict):
            return runtime.table_from({key: to_lua(item) for key, item in value.items()})
        if isinstance(value, list):
            return runtime.table_from([to_lua(item) for item in value])
        return value

    runtime.globals().obj = to_lua(obj)
    script = (SCRIPTS / f"{kind.lower()}.lua").read_text()
    result = runtime.execute(script)
    return result["status"], result["message"]


def resource(status: dict | None, generation: int = 1) -> dict:
    body: dict = {"metadata": {"name": "x", "generation": generation}}
    if status is not None:
        body["status"] = status
    return body


def condition(kind: str, state: str, reason: str, message: str = "") -> dict:
    return {"type": kind, "status": state, "reason": reason, "message": message or reason}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({"phase": "Running", "observedGeneration": 1}, "Progressing"),
        ({"phase": "Succeeded", "observedGeneration": 1}, "Healthy"),
        ({"phase": "Failed", "reason": "crossValidation: mean 0.4 < 0.9"}, "Degraded"),
        ({"phase": "Succeeded", "observedGeneration": 0}, "Progressing"),  # an older generation
    ],
)
def test_training_run(status: dict | None, expected: str) -> None:
    assert health("TrainingRun", resource(status))[0] == expected


def test_training_run_degraded_names_the_reason() -> None:
    assert health("TrainingRun", resource({"phase": "Failed", "reason": "debug gate"})) == (
        "Degraded",
        "debug gate",
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({"phase": "Running", "progress": "3/20"}, "Progressing"),
        ({"phase": "Succeeded", "progress": "20/20"}, "Healthy"),
        ({"phase": "Failed", "reason": "every trial failed"}, "Degraded"),
    ],
)
def test_tuning_job(status: dict | None, expected: str) -> None:
    assert health("TuningJob", resource(status))[0] == expected


READY = condition("Ready", "True", "ServingModel", "2 of 2 replicas are available")
IDLE = condition("Progressing", "False", "RolloutComplete")


@pytest.mark.parametrize(
    ("conditions", "expected", "words"),
    [
        ([READY, IDLE], "Healthy", "2 of 2"),
        ([READY, condition("Progressing", "True", "Canary", "step 1/3: 25% on b")], "Progressing", "25%"),
        (
            [READY, IDLE, condition("Promoted", "False", "AwaitingApproval", "approve b")],
            "Suspended",
            "approve b",
        ),
        (
            [READY, IDLE, condition("Degraded", "True", "CanaryRolledBack", "b was rolled back")],
            "Degraded",
            "b",
        ),
        ([READY, IDLE, condition("Degraded", "False", "CandidatePromoted")], "Healthy", "2 of 2"),
        (
            [
                condition("Ready", "False", "GatesNotPassed", "a did not pass"),
                condition("Progressing", "False", "x"),
            ],
            "Degraded",
            "did not pass",
        ),
    ],
)
def test_model_deployment(conditions: list[dict], expected: str, words: str) -> None:
    status, message = health("ModelDeployment", resource({"observedGeneration": 1, "conditions": conditions}))
    assert status == expected and words in message


def test_model_deployment_without_status_is_progressing() -> None:
    assert health("ModelDeployment", resource(None))[0] == "Progressing"
    stale = resource({"observedGeneration": 1, "conditions": [READY, IDLE]}, generation=2)
    assert health("ModelDeployment", stale)[0] == "Progressing"
