"""The page at `/` that lets a person try the model: built once from the model cards and the server's
limits, so it says what to upload (the classes, the input size, the formats) before anyone guesses."""

from __future__ import annotations

import html
import json
from importlib import resources

from crucible.server.images import ACCEPTED_FORMATS
from crucible.server.settings import ServerSettings

# Browsers name uploads by MIME type; the server decides by the file's content.
MIME_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
# Said on the page whenever the server stores what it is sent (capture on).
CAPTURE_NOTICE = (
    '<p class="notice" id="capture-notice">Images you send are stored to improve the model: you may '
    "correct a prediction below each result.</p>"
)
# Classes named in the instruction before "and N more".
CLASSES_SHOWN = 12


def human_bytes(count: int) -> str:
    """1536 -> '1.5 KB', 33554432 -> '32 MB' (binary multiples, as upload limits are set)."""
    size = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            text = f"{size:.1f}".removesuffix(".0") if unit != "bytes" else str(int(size))
            return f"{text} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def class_list(classes: list[str]) -> str:
    """'cat, dog or fox'; long lists end with 'and N more'."""
    if len(classes) > CLASSES_SHOWN:
        shown = ", ".join(classes[:CLASSES_SHOWN])
        return f"{shown} and {len(classes) - CLASSES_SHOWN} more"
    if len(classes) == 1:
        return classes[0]
    return f"{', '.join(classes[:-1])} or {classes[-1]}"


def instruction(model, settings: ServerSettings, formats: tuple[str, ...] = ACCEPTED_FORMATS) -> str:
    """One sentence: what to upload and what comes back."""
    _, height, width = model.image_shape
    return (
        f"Upload a picture of {class_list(model.classes)} ({len(model.classes)} classes): "
        f"{' or '.join(formats)}, up to {human_bytes(settings.max_body_bytes)} each. "
        f"The model sees it at {width}\u00d7{height} pixels and answers with its {settings.default_top_k} "
        "likeliest classes."
    )


def page_config(model, settings: ServerSettings, formats: tuple[str, ...] = ACCEPTED_FORMATS) -> dict:
    """What the page's script needs to check files before sending them and to explain refusals."""
    return {
        "model": model.name if model else None,
        "formats": list(formats),
        "mimeTypes": [MIME_TYPES[name] for name in formats if name in MIME_TYPES],
        "maxBytes": settings.max_body_bytes,
        "maxBytesText": human_bytes(settings.max_body_bytes),
        "topK": settings.default_top_k,
        # With capture on each result offers "correct this" (a label posted to the feedback endpoint).
        "capture": settings.capture.enabled,
        "classes": list(model.classes) if model else [],
    }


def index_page(models: list, settings: ServerSettings) -> str:
    """The page's HTML for the models served (the first one is the default model of /predict)."""
    template = resources.files("crucible.server").joinpath("static/index.html").read_text(encoding="utf-8")
    model = models[0] if models else None
    about = " · ".join(
        f"{item.name} ({item.card.architecture}, {len(item.classes)} classes, version {item.version})"
        for item in models
    )
    config = json.dumps(page_config(model, settings)).replace("<", "\\u003c")
    hint = instruction(model, settings) if model else "No model is loaded: the server cannot predict yet."
    accept = ",".join(page_config(model, settings)["mimeTypes"])
    notice = CAPTURE_NOTICE if settings.capture.enabled else ""
    return (
        template.replace("{{model}}", html.escape(about or "no model loaded"))
        .replace("{{capture}}", notice)
        .replace("{{instruction}}", html.escape(hint))
        .replace("{{accept}}", html.escape(accept))
        .replace("{{config}}", config)
    )
