"""`crucible label`: attach labels to captured requests in a capture destination, one by one or from a
file produced elsewhere (CSV with the header `id,label`, or JSON Lines with the keys `id` and `label`).

Labels are checked against the classes of the model that answered each request (the destination's
`models/<sha256>.json`, written by the server), or against `--model`'s classes; a label outside them is
refused with the allowed list, an id that was never captured is reported, and the rest are applied.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_SOME_REFUSED, EXIT_INVALID = 0, 1, 2


class LabelFileError(Exception):
    """The import file cannot be read as id,label rows; the message names the line."""


def read_label_file(path: Path) -> list[tuple[str, str]]:
    """(id, label) rows of a .csv (header id,label) or .jsonl file, in order."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelFileError(f"{path}: cannot read it: {error}") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise LabelFileError(f"{path}:{number}: not JSON: {error}") from None
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "label" not in item:
                raise LabelFileError(f'{path}:{number}: expected {{"id": "...", "label": "..."}}')
            rows.append((item["id"], str(item["label"])))
        return rows
    if path.suffix.lower() != ".csv":
        raise LabelFileError(f"{path}: expected a .csv (header id,label) or .jsonl file")
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"id", "label"} <= {name.strip() for name in reader.fieldnames}:
        raise LabelFileError(f"{path}: the first line must be the header id,label; got {reader.fieldnames}")
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    rows = []
    for number, row in enumerate(reader, start=2):
        if not row.get("id") or row.get("label") is None:
            raise LabelFileError(f"{path}:{number}: expected an id and a label")
        rows.append((row["id"].strip(), row["label"].strip()))
    return rows


def _model_classes(directory: str) -> list[str]:
    from crucible.server.artifact import ArtifactError, read_card

    try:
        return read_card(Path(directory)).classes
    except ArtifactError as error:
        raise LabelFileError(f"--model: {error}") from None


def apply_labels(destination: str, rows: list[tuple[str, str]], model: str | None, out=None) -> int:
    """Label every row that names a captured request with one of its model's classes; report the
    others. The exit code: 0 when all were applied, 1 when any was refused."""
    from crucible.server import labels
    from crucible.server.capture_store import CaptureStoreError, open_store

    out = out or sys.stdout
    store = open_store(destination)
    fixed = _model_classes(model) if model else None
    applied, unknown, refused = 0, [], []
    for request_id, label in rows:
        try:
            record = labels.read_record(store, request_id)
            classes = fixed or labels.model_classes(store, record)
            if classes is None:
                refused.append(f"{request_id}: the model that answered it is unknown here; pass --model DIR")
                continue
            labels.attach_label(store, request_id, label, classes, source="import")
            applied += 1
        except labels.UnknownRequest:
            unknown.append(request_id)
        except labels.UnknownLabel as error:
            refused.append(f"{request_id}: {error}")
        except CaptureStoreError as error:
            refused.append(f"{request_id}: {error}")
    print(f"labelled {applied} of {len(rows)} in {store.uri}", file=out)
    for line in refused:
        print(f"refused {line}", file=out)
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        print(f"unknown ids ({len(unknown)}, never captured here): {shown}", file=out)
    return EXIT_OK if not refused and not unknown else EXIT_SOME_REFUSED


def _cmd_label(args: argparse.Namespace) -> int:
    from crucible.server.capture_store import CaptureStoreError

    try:
        if args.import_file:
            rows = read_label_file(Path(args.import_file))
        elif args.id and args.label is not None:
            rows = [(args.id, args.label)]
        else:
            print("error: give --id ID --label L, or --import FILE", file=sys.stderr)
            return EXIT_INVALID
        return apply_labels(args.destination, rows, args.model)
    except (LabelFileError, CaptureStoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID


def register(subparsers: argparse._SubParsersAction) -> None:
    label = subparsers.add_parser(
        "label",
        help="Label captured requests (crucible serve --capture DIR): one, or a CSV/JSONL file of id,label.",
        description="Attach labels to requests a server captured. Each label must be one of the classes of "
        "the model that answered the request; labelled images appear under DIR/labelled/<class>/, which "
        "a TrainingRun reads as an image folder. Exits 1 when any label was refused or any id unknown.",
    )
    label.add_argument(
        "destination", metavar="DIR|URI", help="The capture destination (a directory or s3://)."
    )
    label.add_argument("--id", help="A request id (the `id` of a prediction, its X-Request-Id header).")
    label.add_argument("--label", help="Its true class.")
    label.add_argument(
        "--import",
        dest="import_file",
        metavar="FILE",
        help='A .csv file with the header id,label, or a .jsonl file of {"id", "label"} objects.',
    )
    label.add_argument(
        "--model",
        metavar="DIR",
        help="Check labels against this artifact's classes (default: those of the model that answered "
        "each request, recorded by the server in the destination).",
    )
    label.set_defaults(handler=_cmd_label)
