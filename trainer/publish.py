"""Copy a finished run's files to where its artifact URI says: nothing to do for a local directory, an
upload for `s3://<bucket>/<prefix>`.

Only the files this run wrote are uploaded (a reused output directory may hold an older run's
weights), and result.json goes last: a result.json in the bucket means every other file is there.
"""

from __future__ import annotations

import json
from pathlib import Path

from crucible.s3 import is_s3_uri, parse_s3_uri
from crucible.trainer import export

# What a run leaves in its output directory, in upload order.
SUCCEEDED_FILES = (
    export.WEIGHTS_FILE,
    export.MODEL_FILE,
    export.PREDICTIONS_FILE,
    export.REPORT_FILE,
    export.RESULT_FILE,
)
FAILED_FILES = (export.REPORT_FILE, export.RESULT_FILE)


def onnx_files(output_dir: Path) -> list[str]:
    """The verified ONNX copies this run's model card names (a server may run them), weights first."""
    try:
        card = json.loads((output_dir / export.MODEL_FILE).read_text())
    except (OSError, ValueError):
        return []
    onnx = card.get("onnx") if isinstance(card, dict) else None
    if not isinstance(onnx, dict) or onnx.get("verified") is not True:
        return []
    int8 = onnx.get("int8") if isinstance(onnx.get("int8"), dict) else {}
    return [str(record["file"]) for record in (onnx, int8) if record.get("file") and record.get("sha256")]


class PublishError(Exception):
    """The files could not be copied; the message is one line."""


def remote_uri(uri: str | None, field: str) -> str | None:
    """The normalized s3:// URI when `uri` is one (InvalidSpec naming `field` when it is malformed);
    None for a local artifact."""
    if not is_s3_uri(uri):
        return None
    return parse_s3_uri(uri, field).uri  # type: ignore[arg-type]


def check_credentials(uri: str | None) -> None:
    """Before training, not after: a run that cannot upload its artifact must not train for hours."""
    if is_s3_uri(uri):
        from crucible.s3_transfer import require_credentials

        require_credentials()


def publish(output_dir: Path, uri: str | None, succeeded: bool) -> None:
    """Upload the run's files under `uri` when it is an s3:// URI; PublishError when any upload fails."""
    if not is_s3_uri(uri):
        return
    from crucible.s3_transfer import S3Directory, S3Error

    names = SUCCEEDED_FILES if succeeded else FAILED_FILES
    if succeeded:  # the ONNX copies with the weights, before model.json and result.json
        names = (names[0], *onnx_files(output_dir), *names[1:])
    try:
        store = S3Directory(parse_s3_uri(uri, "--artifact-uri"))  # type: ignore[arg-type]
        for name in names:
            if (output_dir / name).is_file():
                store.upload(output_dir / name, name)
    except S3Error as error:
        raise PublishError(f"artifact upload failed: {error}") from None
