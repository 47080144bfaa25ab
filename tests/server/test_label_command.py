"""`crucible label`: labels from a person or from a file produced elsewhere, checked against the classes
of the model that answered, on a capture directory the real server wrote; and `crucible serve
--capture` refusing a destination it cannot use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crucible.cli import main
from crucible.server.app import create_app
from crucible.server.repository import ModelRepository
from crucible.server.settings import CaptureSettings, ServerSettings
from tests.cli import assert_one_line_error, run_crucible
from tests.server.helpers import infer_body, png_bytes


@pytest.fixture
def captured(digits_model, digit_pixels, tmp_path) -> tuple[Path, list[str]]:
    """A capture directory holding three requests (two uploads, one tensor), and their ids."""
    pixels, _ = digit_pixels
    settings = ServerSettings(capture=CaptureSettings(destination=str(tmp_path / "capture")))
    with TestClient(create_app(ModelRepository([digits_model]), settings)) as client:
        files = [("files", (f"{i}.png", png_bytes(pixels[i]), "image/png")) for i in (1, 2)]
        ids = [item["id"] for item in client.post("/predict", files=files).json()["predictions"]]
        ids.append(client.post("/v2/models/digits-tiny/infer", json=infer_body(pixels[3:4])).json()["id"])
    return tmp_path / "capture", ids  # leaving the app writes what was queued


def test_one_label_lands_in_the_image_folder_view(captured, capsys):
    directory, ids = captured
    assert main(["label", str(directory), "--id", ids[0], "--label", "1"]) == 0
    assert (directory / "labelled" / "1" / f"{ids[0]}.png").is_file()
    label = json.loads((directory / "labels" / f"{ids[0]}.json").read_text())
    assert (label["label"], label["source"]) == ("1", "import")
    assert f"labelled 1 of 1 in {directory}" in capsys.readouterr().out


def test_an_import_applies_good_rows_and_reports_bad_labels_and_unknown_ids(captured, capsys, tmp_path):
    directory, ids = captured
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text(f"id,label\n{ids[0]},1\n{ids[1]},cat\n{'f' * 32},3\n{ids[2]},3\n")
    assert main(["label", str(directory), "--import", str(labels_file)]) == 1
    out = capsys.readouterr().out
    assert "labelled 2 of 4" in out
    assert (
        f"refused {ids[1]}: label 'cat' is not one of the model's classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
        in out
    )
    assert f"unknown ids (1, never captured here): {'f' * 32}" in out
    assert sorted(p.parent.name for p in (directory / "labelled").glob("*/*.png")) == ["1", "3"]


def test_jsonl_import_relabels_and_a_model_option_fixes_the_classes(
    captured, capsys, tmp_path, digits_artifact
):
    directory, ids = captured
    assert main(["label", str(directory), "--id", ids[2], "--label", "5"]) == 0
    rows = tmp_path / "labels.jsonl"
    rows.write_text(
        json.dumps({"id": ids[2], "label": "3"}) + "\n\n" + json.dumps({"id": ids[0], "label": 1}) + "\n"
    )
    assert main(["label", str(directory), "--import", str(rows), "--model", str(digits_artifact)]) == 0
    assert not (directory / "labelled" / "5" / f"{ids[2]}.png").exists()
    assert (directory / "labelled" / "3" / f"{ids[2]}.png").is_file()


def test_an_unreadable_file_is_one_line_of_error(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("request,class\nabc,1\n")
    assert_one_line_error(
        run_crucible("label", str(tmp_path), "--import", str(bad), cwd=tmp_path), "header id,label"
    )


def test_serve_refuses_a_capture_destination_it_cannot_write_to_before_loading_the_model(
    tmp_path, digits_artifact
):
    proc = run_crucible(
        "serve", "--model", str(digits_artifact), "--capture", "http://example/x", cwd=tmp_path
    )
    assert_one_line_error(proc, "--capture", "neither a directory nor an s3://")
