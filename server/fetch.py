"""The artifact `crucible serve --model` names: a local directory as it is, or an `s3://<bucket>/<prefix>`
artifact downloaded into a cache directory first, then verified exactly as a local one.

Only model.json and the weights files it names (PyTorch's, and the verified ONNX copy the backend
may run) are downloaded: that is all a server reads, and it needs no permission to list the bucket.
The cache defaults to the temporary directory, the one place a server with a read-only root file
system may write (an emptyDir at /tmp in its pod).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from crucible.api.manifest import InvalidSpec
from crucible.s3 import S3Location, is_s3_uri, parse_s3_uri
from crucible.server.artifact import CARD_FILE, ArtifactError, VerifiedArtifact, read_card, verify_artifact

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "crucible-models"


def _download(location: S3Location, directory: Path, onnx: bool, int8: bool) -> None:
    from crucible.s3_transfer import S3Directory, S3Error

    try:
        store = S3Directory(location)
        store.download(CARD_FILE, directory / CARD_FILE)
        # The card says which file holds the weights; read_card refuses names outside the directory.
        card = read_card(directory)
        store.download(card.weights_file, directory / card.weights_file)
        # The verified ONNX copy the server may run (checked where it is used), not the unused ones.
        for copy, wanted in ((card.onnx.model, onnx), (card.onnx.int8, int8)):
            if copy is not None and wanted:
                store.download(copy.file, directory / copy.file)
    except S3Error as error:
        raise ArtifactError(str(error)) from None


def fetch_verified(
    model: str, cache_dir: Path = DEFAULT_CACHE_DIR, backend: str = "auto", quantize: str | None = None
) -> VerifiedArtifact:
    """The verified artifact `model` names (a directory or an s3:// URI); ArtifactError otherwise.

    A downloaded artifact is fetched afresh each time (a server starts rarely, and a cached copy
    could be an older artifact at the same URI); its errors name the URI, not the cache directory."""
    if not is_s3_uri(model):
        return verify_artifact(Path(model))
    try:
        location = parse_s3_uri(model, "--model")
    except InvalidSpec as error:
        raise ArtifactError(str(error)) from None
    directory = cache_dir / location.bucket / location.prefix
    try:
        _download(location, directory, onnx=backend != "torch" and quantize is None, int8=quantize == "int8")
        return verify_artifact(directory)
    except ArtifactError as error:
        raise ArtifactError(str(error).replace(str(directory), location.uri)) from None
