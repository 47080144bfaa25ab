"""The held-out evaluation on the console's pages: per-class figures side by side and McNemar's test
(compare), and the learning curves and confusion matrix drawn from a run's result (its status on a
cluster) where its report.png is out of reach. Pure: resource-shaped dicts in, HTML out; charts are
inline SVG."""

from __future__ import annotations

from crucible.compare import DEFAULT_ALPHA, NotComparable, images_tested, outcome_test
from crucible.console.html import e, empty, table
from crucible.console.views import number

PER_CLASS_FIGURES = (("f1", "F1"), ("precision", "Precision"), ("recall", "Recall"))
CURVES = (
    ("trainLoss", "train loss", "loss train"),
    ("valLoss", "validation loss", "loss val"),
    ("trainAccuracy", "train accuracy", "accuracy train"),
    ("valAccuracy", "validation accuracy", "accuracy val"),
)
CONFUSION_DRAWN = 30  # classes; a larger matrix is unreadable as a picture: model.json has it


def summary_of(run: dict) -> dict:
    """status.evaluation (what the trainer's result carries), else the same from the model card."""
    summary = (run.get("status") or {}).get("evaluation")
    if summary:
        return summary
    card = run.get("card") or {}
    held_out = (card.get("evaluation") or {}).get("heldOut") or {}
    classes, per_class = card.get("classes") or [], held_out.get("perClass") or {}
    if not classes or not per_class:
        return {}
    lists = {
        key: [(per_class.get(name) or {}).get(key) for name in classes]
        for key in ("precision", "recall", "f1", "support")
    }
    return {"classes": classes, **lists, "confusion": held_out.get("confusionMatrix") or []}


def per_class_of(run: dict) -> dict[str, dict[str, float | None]]:
    """{class: {f1, precision, recall, support}} of the run's held-out evaluation (empty: unknown)."""
    summary = summary_of(run)
    figures = ("f1", "precision", "recall", "support")
    return {
        name: {key: (summary.get(key) or [None] * (i + 1))[i] for key in figures}
        for i, name in enumerate(summary.get("classes") or [])
    }


def _delta(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return ""
    delta = value - base
    sign, cls = ("+", "up") if delta > 0 else ("", "down") if delta < 0 else ("", "same")
    return f' <span class="delta {cls}">({sign}{number(delta)})</span>'


def per_class_section(runs: list[dict], names: list[str]) -> str:
    """One row per class, one column per run: F1, precision and recall, each with its difference from
    the first run."""
    tables = [per_class_of(run) for run in runs]
    if not tables[0]:
        return empty("No per-class figures: the first run's result does not carry them.")
    rows = []
    for name in tables[0]:
        cells = []
        for index, figures in enumerate(tables):
            lines = []
            for key, label in PER_CLASS_FIGURES:
                value = (figures.get(name) or {}).get(key)
                base = (tables[0].get(name) or {}).get(key)
                delta = _delta(value, base) if index else ""
                lines.append(f'<span class="figure"><abbr>{label}</abbr> {number(value)}{delta}</span>')
            cells.append(f'<div class="figures">{"".join(lines)}</div>')
        support = (tables[0].get(name) or {}).get("support")
        rows.append([f'{e(name)}<br><small class="muted">{number(support)} images</small>', *cells])
    return table(["Class", *names], rows, cls="compare per-class stack")


def significance_section(runs: list[dict], alpha: float = DEFAULT_ALPHA) -> str:
    """McNemar's exact test of each run against the first, from their held-out outcome bits."""
    first = runs[0]
    first_name = first["metadata"]["name"]
    items = []
    for run in runs[1:]:
        name = run["metadata"]["name"]
        outcomes = [(item.get("status") or {}).get("outcomes") for item in (first, run)]
        try:
            test = outcome_test(*outcomes)
        except NotComparable as error:
            items.append(f"<li>{e(name)} vs {e(first_name)}: not tested ({e(error)})</li>")
            continue
        verdict = "significant" if test.significant(alpha) else "not significant"
        items.append(
            f"<li>{e(name)} vs {e(first_name)}: on {images_tested(outcomes[0])} shared held-out images, "
            f"{test.only_b_right} right only by {e(name)}, {test.only_a_right} right only by "
            f"{e(first_name)}; <strong>p = {test.p_value:.4g}</strong> ({verdict} at alpha {alpha:g})</li>"
        )
    return f'<ul class="tests">{"".join(items)}</ul>'


def curves_chart(curves: dict) -> str:
    """Loss and accuracy of the final fit by epoch, two panels side by side; inline SVG."""
    epochs = curves.get("epoch") or []
    drawn = [(key, label, cls) for key, label, cls in CURVES if len(curves.get(key) or []) == len(epochs)]
    if len(epochs) < 1 or not drawn:
        return empty("No learning curves in the run's result.")
    width, height, pad, left = 360, 170, 26, 44
    panels = []
    for panel in ("loss", "accuracy"):
        series = [(key, label, cls) for key, label, cls in drawn if cls.startswith(panel)]
        if not series:
            continue
        values = [v for key, _, _ in series for v in curves[key] if v is not None]
        low, high = (0.0, 1.0) if panel == "accuracy" else (0.0, max(values) or 1.0)
        span = max(1, len(epochs) - 1)

        def x(index: int, span: int = span) -> float:
            return left + index / span * (width - left - pad)

        def y(value: float, low: float = low, high: float = high) -> float:
            return height - pad - (value - low) / (high - low) * (height - 2 * pad)

        lines = []
        for key, label, cls in series:
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(curves[key]) if v is not None)
            dots = "".join(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" class="{cls}"><title>{label}, epoch '
                f"{epochs[i]}: {number(v)}</title></circle>"
                for i, v in enumerate(curves[key])
                if v is not None
            )
            lines.append(f'<polyline points="{points}" class="curve {cls}"/>{dots}')
        legend = "".join(
            f'<text x="{left + 4 + 120 * n}" y="12" class="{cls}">\u25cf {label}</text>'
            for n, (_, label, cls) in enumerate(series)
        )
        panels.append(
            f'<svg class="chart curves" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{panel} of the final fit by epoch">{legend}'
            f'<line x1="{left}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" class="axis"/>'
            f'<line x1="{left}" x2="{left}" y1="{pad}" y2="{height - pad}" class="axis"/>{"".join(lines)}'
            f'<text x="{left - 4}" y="{y(high) + 4:.1f}" text-anchor="end">{number(high)}</text>'
            f'<text x="{left - 4}" y="{y(low) + 4:.1f}" text-anchor="end">{number(low)}</text>'
            f'<text x="{left}" y="{height - 8}">epoch {epochs[0]}</text>'
            f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">{epochs[-1]}</text></svg>'
        )
    return "".join(panels)


def confusion_chart(classes: list[str], matrix: list[list[int]]) -> str:
    """True class by row, prediction by column; each cell shaded by its share of the row."""
    count = len(classes)
    if not count or len(matrix) != count:
        return empty("No confusion matrix in the run's result.")
    if count > CONFUSION_DRAWN:
        return empty(f"{count} classes: too many to draw; model.json holds the confusion matrix.")
    cell, left, top = 26, 60, 40
    size = left + cell * count + 8, top + cell * count + 8
    parts = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        baseline = top + cell * i + cell * 0.65
        parts.append(f'<text x="{left - 6}" y="{baseline:.1f}" text-anchor="end">{e(classes[i][:8])}</text>')
        for j, value in enumerate(row):
            share = value / total
            cls = "hit" if i == j else "miss"
            parts.append(
                f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 1}" height="{cell - 1}" '
                f'class="{cls}" fill-opacity="{0.08 + 0.92 * share:.2f}"><title>true {e(classes[i])}, '
                f"predicted {e(classes[j])}: {value}</title></rect>"
            )
            if value:
                ink = "light" if share > 0.55 else "dark"
                parts.append(
                    f'<text x="{left + cell * j + cell / 2 - 0.5:.1f}" y="{baseline:.1f}" '
                    f'text-anchor="middle" class="{ink}">{value}</text>'
                )
    heads = "".join(
        f'<text x="{left + cell * j + cell / 2:.1f}" y="{top - 6}" text-anchor="middle">{e(name[:4])}</text>'
        for j, name in enumerate(classes)
    )
    return (
        f'<svg class="chart confusion" viewBox="0 0 {size[0]} {size[1]}" role="img" '
        f'aria-label="Confusion matrix: true class by row, predicted class by column">'
        f'<text x="{left}" y="12">predicted \u2192</text>{heads}{"".join(parts)}</svg>'
    )


def drawn_evaluation(run: dict) -> str:
    """Learning curves and confusion matrix from the run's result, for a page without report.png."""
    summary = summary_of(run)
    if not summary:
        return empty(
            "No report picture and no evaluation in the run's status: it is written when a run succeeds."
        )
    curves = curves_chart(summary.get("curves") or {})
    confusion = confusion_chart(summary.get("classes") or [], summary.get("confusion") or [])
    return (
        '<p class="muted">Drawn from the run\'s result (its report.png is beside the artifact, out of '
        f'reach here).</p><div class="split">{curves}{confusion}</div>'
    )
