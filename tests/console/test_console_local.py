"""The console over a local runs/ directory, through HTTP: what each page and the JSON API say."""

from __future__ import annotations

import re
import subprocess
import sys
from html import unescape

from tests.console.conftest import FAILED_RUN, SEARCH


def text_of(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip())


def test_the_api_lists_every_run_with_the_labels_of_its_search(console_client):
    runs = {item["metadata"]["name"]: item for item in console_client.get("/api/runs").json()["items"]}
    assert set(runs) == {
        "digits-tiny",
        FAILED_RUN,
        f"{SEARCH}-trial-000",
        f"{SEARCH}-trial-001",
        f"{SEARCH}-trial-002",
    }
    assert runs[f"{SEARCH}-trial-001"]["metadata"]["labels"] == {
        "crucible.dev/tuning-job": SEARCH,
        "crucible.dev/trial-number": "1",
    }
    assert runs["digits-tiny"]["status"]["phase"] == "Succeeded"
    assert runs["digits-tiny"]["card"]["architecture"] == "tiny_cnn"
    assert "directory" not in runs["digits-tiny"]
    job = console_client.get(f"/api/tuningjobs/local/{SEARCH}").json()
    assert job["status"]["phase"] == "Succeeded" and len(job["status"]["trials"]) == 3 and job["events"] == []


def test_the_runs_page_shows_a_failed_gate_with_its_check_and_threshold(console_client):
    page = text_of(console_client.get("/runs").text)
    assert re.search(
        rf"{FAILED_RUN} Failed crossValidation gate failed: mean: cv balancedAccuracy 0\.\d+ is below 0\.999 — "
        r"\u2717 crossValidation mean 0\.\d+, needs \u2265 0\.999",
        page,
    ), page
    assert re.search(
        r"digits-tiny Succeeded tiny_cnn \u2713 debug \u2713 crossValidation \u2713 overfitting "
        r"\u2713 baseline \u2713 finalTraining \u2713 heldOut 0\.\d+ \u00b1 0\.\d+ 0\.\d+ \d+[smhd]",
        page,
    ), page


def test_bad_queries_and_missing_objects_get_plain_answers(console_client, runs_dir):
    bad_sort = console_client.get("/runs?sort=speed")
    assert bad_sort.status_code == 400
    assert "sort: &#x27;speed&#x27; is not one of name, phase, architecture, cv, metric, age" in bad_sort.text
    missing = console_client.get("/runs/local/nope")
    assert missing.status_code == 404 and f"TrainingRun local/nope not found in {runs_dir}" in missing.text
    api = console_client.get("/api/runs/local/nope")
    assert (api.status_code, api.json()) == (
        404,
        {"error": f"TrainingRun local/nope not found in {runs_dir}"},
    )


def test_runs_of_different_data_are_not_compared(console_client):
    answer = console_client.get(f"/compare?run=local/digits-tiny&run=local/{SEARCH}-trial-000")
    assert answer.status_code == 409
    assert "These runs cannot be compared fairly: the runs were evaluated on different data" in text_of(
        answer.text
    )
    same = console_client.get(f"/compare?run=local/{SEARCH}-trial-000&run=local/{SEARCH}-trial-001")
    assert same.status_code == 200 and "Differences are from the first run." in same.text


def test_the_refresh_asks_for_the_main_part_only(console_client):
    whole = console_client.get("/runs")
    part = console_client.get("/runs", headers={"X-Console-Fragment": "main"})
    assert whole.text.startswith("<!doctype html>") and not part.text.startswith("<!doctype")
    assert part.headers["X-Console-Live"] == "false"
    assert f'data-digest="{part.headers["X-Console-Digest"]}"' in whole.text
    assert part.text in whole.text


def test_the_console_command_refuses_a_missing_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "crucible", "console", "--runs", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"error: --runs: {tmp_path / 'nope'} is not a directory",
    )


def test_behind_a_path_prefix_every_link_stays_under_it(runs_dir):
    from fastapi.testclient import TestClient

    from crucible.console.app import create_app
    from crucible.console.local import LocalSource

    with TestClient(create_app(LocalSource(runs_dir)), root_path="/console") as client:
        page = client.get("/runs").text
        assert '<base href="/console/">' in page
        assert 'href="runs/local/digits-tiny"' in page  # relative: resolved against the base
        assert client.get("/docs").text.count("/console/static-offline-docs/") == 2


def test_the_console_needs_no_torch():
    # It runs with the operator's image, which has none.
    code = "import sys, crucible.console.app, crucible.console.cluster, crucible.console.local; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
