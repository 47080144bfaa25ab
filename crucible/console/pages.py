"""The console's pages as HTML: pure functions from resource-shaped dicts to the `<main>` of a page.
Everything interpolated is escaped here; charts are inline SVG (nothing is loaded from elsewhere)."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import quote, urlencode

from crucible.console import evaluation, views
from crucible.console.html import e, empty, table
from crucible.console.views import number

PASS, FAIL = "\u2713", "\u2717"


def phase_badge(phase: str | None) -> str:
    phase = phase or "Pending"
    return f'<span class="badge phase-{e(phase.lower())}">{e(phase)}</span>'


def run_href(namespace: str, name: str) -> str:
    return f"runs/{quote(namespace)}/{quote(name)}"


def job_href(namespace: str, name: str) -> str:
    return f"tuningjobs/{quote(namespace)}/{quote(name)}"


def _run_link(namespace: str, name: str) -> str:
    return f'<a href="{e(run_href(namespace, name))}">{e(name)}</a>'


def deployment_href(namespace: str, name: str) -> str:
    return f"deployments/{quote(namespace)}/{quote(name)}"


def gate_cell(verdicts: list[views.GateVerdict]) -> str:
    if not verdicts:
        return '<span class="muted">none yet</span>'
    parts = []
    for gate in verdicts:
        mark = PASS if gate.passed else FAIL
        detail = "".join(f'<span class="check">{e(text)}</span>' for text in gate.failed_checks)
        cls = "pass" if gate.passed else "fail"
        parts.append(
            f'<span class="gate {cls}" title="{e(gate.name)} {"passed" if gate.passed else "failed"}">'
            f"{mark} {e(gate.name)}{detail}</span>"
        )
    return f'<div class="gates">{"".join(parts)}</div>'


def cv_text(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{number(mean)} ± {number(std)}"


def _reason(status: dict) -> str:
    """Why the object is where it is: in red only when it failed."""
    if not status.get("reason"):
        return ""
    cls = "reason" if status.get("phase") == "Failed" else "muted"
    return f'<p class="{cls}">{e(status["reason"])}</p>'


# Runs


def _sort_link(label: str, key: str, query: dict) -> str:
    current, descending = query.get("sort", "age"), query.get("order", "asc") == "desc"
    order = "asc" if key == current and descending else "desc" if key == current else "asc"
    arrow = ("\u25bc" if descending else "\u25b2") if key == current else ""
    params = {k: v for k, v in query.items() if k not in ("sort", "order") and v}
    href = "runs?" + urlencode({**params, "sort": key, "order": order})
    sort_state = ("descending" if descending else "ascending") if key == current else "none"
    return (
        f'<a class="sort" href="{e(href)}" aria-sort="{sort_state}">{e(label)}'
        f'<span aria-hidden="true">{arrow}</span></a>'
    )


def runs_page(runs: list[dict], now: datetime, query: dict) -> str:
    """Every run, one table per namespace; `query` holds label, sort and order."""
    selector = views.parse_selector(query.get("label", ""))
    rows = [
        views.run_row(run, now)
        for run in runs
        if views.matches(run["metadata"].get("labels") or {}, selector)
    ]
    rows = views.sort_rows(rows, query.get("sort", "age"), query.get("order", "asc") == "desc")
    label = e(query.get("label", ""))
    parts = [
        "<h1>Training runs</h1>",
        '<form class="filter" method="get" action="runs" role="search">'
        '<label for="label">Filter by label</label>'
        f'<input id="label" name="label" value="{label}" placeholder="team=vision" autocomplete="off">'
        + "".join(
            f'<input type="hidden" name="{k}" value="{e(query[k])}">'
            for k in ("sort", "order")
            if query.get(k)
        )
        + '<button type="submit">Filter</button></form>',
    ]
    if not rows:
        parts.append(empty("No runs match." if selector else "No runs yet."))
        return "".join(parts)
    headers = (
        ['<span class="visually-hidden">Compare</span>']
        + [
            _sort_link(text, key, query)
            for text, key in (("Name", "name"), ("Phase", "phase"), ("Architecture", "architecture"))
        ]
        + [
            "Gates",
            _sort_link("CV mean ± std", "cv", query),
            _sort_link("Held-out accuracy", "metric", query),
            _sort_link("Age", "age", query),
        ]
    )
    parts.append('<form method="get" action="compare" class="compare-form">')
    for namespace in sorted({row["namespace"] for row in rows}):
        table_rows = []
        for row in (row for row in rows if row["namespace"] == namespace):
            ident = f"{row['namespace']}/{row['name']}"
            reason = (
                f'<div class="reason">{e(row["reason"])}</div>'
                if row["phase"] == "Failed" and row["reason"]
                else ""
            )
            table_rows.append(
                [
                    f'<input type="checkbox" name="run" value="{e(ident)}" '
                    f'aria-label="Compare {e(row["name"])}">',
                    f'<a href="{e(run_href(namespace, row["name"]))}">{e(row["name"])}</a>',
                    phase_badge(row["phase"]) + reason,
                    e(row["architecture"]),
                    gate_cell(row["gates"]),
                    cv_text(row["cv_mean"], row["cv_std"]),
                    number(row["metric"]),
                    f'<span title="{e(row["age"])}">{e(row["age"])}</span>',
                ]
            )
        parts.append(f"<h2>Namespace {e(namespace)}</h2>")
        parts.append(table(headers, table_rows, cls="runs stack"))
    parts.append('<button type="submit">Compare selected runs</button></form>')
    return "".join(parts)


# One run


def _facts(pairs: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def gate_sections(run: dict) -> str:
    gates = (run.get("status") or {}).get("gates") or {}
    if not gates:
        return empty("No gate has reported yet.")
    out = []
    for verdict in views.gates_of(run):
        checks = (gates[verdict.name] or {}).get("checks") or {}
        rows = [
            [
                e(name),
                number(check.get("value")),
                e(views.OPS.get(str(check.get("op")), check.get("op") or ""))
                + " "
                + number(check.get("threshold")),
                f'<span class="{"pass" if check.get("passed") else "fail"}">'
                f"{PASS + ' passed' if check.get('passed') else FAIL + ' failed'}</span>",
            ]
            for name, check in checks.items()
        ]
        title = f"{PASS if verdict.passed else FAIL} {e(verdict.name)}"
        out.append(f'<h3 class="{"pass" if verdict.passed else "fail"}">{title}</h3>')
        out.append(table(["Check", "Value", "Threshold", "Result"], rows))
    return "".join(out)


def bar_chart(values: list[float], labels: list[str], title: str, reference: float | None = None) -> str:
    """Bars from 0 to 1 (scores), an optional dashed reference line (the mean); inline SVG."""
    width, height, pad = 320, 140, 24
    if not values:
        return ""
    step = (width - 2 * pad) / len(values)
    bars = []
    for index, (value, label) in enumerate(zip(values, labels, strict=True)):
        bar_height = max(0.0, min(1.0, value)) * (height - 2 * pad)
        x = pad + index * step + step * 0.15
        bars.append(
            f'<rect x="{x:.1f}" y="{height - pad - bar_height:.1f}" width="{step * 0.7:.1f}" '
            f'height="{bar_height:.1f}" class="bar"><title>{e(label)}: {number(value)}</title></rect>'
            f'<text x="{x + step * 0.35:.1f}" y="{height - 8}" text-anchor="middle">{e(label)}</text>'
            f'<text x="{x + step * 0.35:.1f}" y="{height - pad - bar_height - 4:.1f}" text-anchor="middle">'
            f"{number(value)}</text>"
        )
    line = ""
    if reference is not None:
        y = height - pad - max(0.0, min(1.0, reference)) * (height - 2 * pad)
        line = f'<line x1="{pad}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" class="reference"/>'
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">'
        f'<line x1="{pad}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" class="axis"/>'
        f"{''.join(bars)}{line}</svg>"
    )


def cv_section(run: dict) -> str:
    gate = ((run.get("status") or {}).get("gates") or {}).get("crossValidation") or {}
    folds = gate.get("folds") or []
    if not folds:
        return empty("No cross-validation folds (the gate is off or has not run).")
    metric = gate.get("metric", "score")
    chart = bar_chart(
        folds, [f"fold {i + 1}" for i in range(len(folds))], f"{metric} of each fold", gate.get("mean")
    )
    rows = [[f"fold {i + 1}", number(score)] for i, score in enumerate(folds)]
    rows.append(
        ["<strong>mean ± std</strong>", f"<strong>{cv_text(gate.get('mean'), gate.get('std'))}</strong>"]
    )
    return f'<div class="split">{chart}{table(["Fold", e(metric)], rows)}</div>'


def metrics_section(run: dict) -> str:
    metrics = (run.get("status") or {}).get("metrics") or {}
    if not metrics:
        return empty("No metrics yet.")
    return table(["Metric", "Value"], [[e(name), number(value)] for name, value in metrics.items()])


def card_section(run: dict) -> str:
    card = run.get("card") or {}
    spec = run.get("spec") or {}
    status = run.get("status") or {}
    artifact = status.get("artifact") or {}
    pairs = []
    if card:
        shape = (card.get("input") or {}).get("shape")
        classes = card.get("classes") or []
        pairs += [
            ("Architecture", e(card.get("architecture", "—"))),
            (
                "Classes",
                e(f"{len(classes)}: {', '.join(map(str, classes[:20]))}{' …' if len(classes) > 20 else ''}"),
            ),
            ("Input", e(" \u00d7 ".join(map(str, shape)) if shape else "—")),
            ("Normalization", e(json.dumps(card.get("normalization")))),
            ("Seed", e(card.get("seed", "—"))),
            ("Dataset fingerprint", f"<code>{e(card.get('datasetFingerprint', '—'))}</code>"),
            ("Trained", e(card.get("createdAt", "—"))),
            ("Versions", e(", ".join(f"{k} {v}" for k, v in (card.get("versions") or {}).items()))),
        ]
    else:
        model = spec.get("model") or {}
        pairs += [
            ("Architecture", e(model.get("architecture", "—"))),
            ("Dataset", e(json.dumps(spec.get("dataset") or {}))),
        ]
    pairs += [
        ("Artifact", f"<code>{e(artifact.get('uri', '—'))}</code>"),
        ("sha256", f'<code class="hash">{e(artifact.get("sha256", "—"))}</code>'),
    ]
    hyper = spec.get("hyperparameters") or {}
    if hyper:
        pairs.append(
            ("Hyperparameters", e(", ".join(f"{k} {v}" for k, v in hyper.items() if not isinstance(v, dict))))
        )
    return _facts(pairs)


def pods_section(pods: list[dict]) -> str:
    if not pods:
        return empty("No pods.")
    rows = [
        [
            e(p["name"]),
            e(p.get("track") or "—"),
            e(p.get("phase") or "—"),
            e(p["ready"]),
            e(p["restarts"]),
            e(p.get("started") or "—"),
        ]
        for p in pods
    ]
    return table(["Pod", "Track", "Phase", "Ready", "Restarts", "Started"], rows, cls="stack")


def events_section(events: list[dict]) -> str:
    if not events:
        return empty("No events.")
    rows = [
        [
            e(ev.get("type", "")),
            e(ev.get("reason", "")),
            e(ev.get("message", "")),
            e(ev.get("count", 1)),
            e(ev.get("lastTimestamp") or ""),
        ]
        for ev in events
    ]
    return table(["Type", "Reason", "Message", "Count", "Last seen"], rows)


def run_page(
    run: dict, events: list[dict], has_report: bool, deployments: list[dict], pods: list[dict] | None = None
) -> str:
    metadata = run["metadata"]
    status = run.get("status") or {}
    namespace, name = metadata["namespace"], metadata["name"]
    labels = metadata.get("labels") or {}
    links = []
    if labels.get("crucible.dev/tuning-job"):
        job = labels["crucible.dev/tuning-job"]
        links.append(
            f"trial {e(labels.get('crucible.dev/trial-number', '?'))} of TuningJob "
            f'<a href="{e(job_href(namespace, job))}">{e(job)}</a>'
        )
    for deployment in deployments:
        dep_name = deployment["metadata"]["name"]
        links.append(
            f'served by ModelDeployment <a href="{e(deployment_href(namespace, dep_name))}">{e(dep_name)}</a>'
        )
    label_text = ", ".join(f"{k}={v}" for k, v in labels.items()) or "none"
    reason = _reason(status)
    report = (
        f'<img class="report" src="{e(run_href(namespace, name))}/report.png" '
        f'alt="Learning curves and confusion matrix of {e(name)}">'
        if has_report
        else evaluation.drawn_evaluation(run)
    )
    return "".join(
        [
            f"<h1>{e(name)} {phase_badge(status.get('phase'))}</h1>",
            reason,
            _facts(
                [("Namespace", e(namespace)), ("Labels", e(label_text))]
                + [("Belongs to", link) for link in links]
            ),
            "<section><h2>Gates</h2>",
            gate_sections(run),
            "</section>",
            "<section><h2>Cross-validation folds</h2>",
            cv_section(run),
            "</section>",
            "<section><h2>Metrics</h2>",
            metrics_section(run),
            "</section>",
            "<section><h2>Learning curves and confusion matrix</h2>",
            report,
            "</section>",
            "<section><h2>Model card</h2>",
            card_section(run),
            "</section>",
            *(
                ["<section><h2>Trainer pods</h2>", pods_section(pods), "</section>"]
                if pods is not None
                else []
            ),
            "<section><h2>Events</h2>",
            events_section(events),
            "</section>",
        ]
    )


# Compare


def _gate_names(runs: list[dict]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [gate.name for gate in views.gates_of(run) if gate.name not in names]
    return names


def _gate_mark(run: dict, gate: str) -> str:
    verdict = next((g for g in views.gates_of(run) if g.name == gate), None)
    if verdict is None:
        return "—"
    return (
        f'<span class="pass">{PASS} passed</span>'
        if verdict.passed
        else f'<span class="fail">{FAIL} failed</span>'
    )


def compare_page(runs: list[dict], refusals: list[str]) -> str:
    names = [
        f'<a href="{e(run_href(r["metadata"]["namespace"], r["metadata"]["name"]))}">'
        f"{e(r['metadata']['name'])}</a>"
        for r in runs
    ]
    if refusals:
        items = "".join(f"<li>{e(reason)}</li>" for reason in refusals)
        return (
            f'<h1>Compare runs</h1><div class="refusal" role="alert"><p>These runs cannot be compared '
            f"fairly:</p><ul>{items}</ul><p>Compare runs trained and evaluated on the same data and classes."
            f"</p></div><p>Runs: {', '.join(names)}</p>"
        )
    headers = ["", *names]
    rows = [
        ["Phase", *[phase_badge((r.get("status") or {}).get("phase")) for r in runs]],
        ["Architecture", *[e(views.architecture_of(r)) for r in runs]],
        ["Data", *[e(views.dataset_identity(r)) for r in runs]],
    ]
    rows += [[f"{e(gate)} gate", *[_gate_mark(r, gate) for r in runs]] for gate in _gate_names(runs)]
    for gate, check, per_run in views.check_table(runs):
        cells = []
        for data in per_run:
            if data is None:
                cells.append("—")
            else:
                mark = PASS if data.get("passed") else FAIL
                cls = "pass" if data.get("passed") else "fail"
                cells.append(f'<span class="{cls}">{mark} {number(data.get("value"))}</span>')
        rows.append([f"{e(gate)} · {e(check)}", *cells])
    for name, values, deltas in views.metric_table(runs):
        cells = []
        for index, (value, delta) in enumerate(zip(values, deltas, strict=True)):
            shown = number(value)
            if index and delta is not None:
                sign = "+" if delta > 0 else ""
                cls = "up" if delta > 0 else "down" if delta < 0 else "same"
                shown += f' <span class="delta {cls}">({sign}{number(delta)})</span>'
            cells.append(shown)
        rows.append([e(name), *cells])
    return "".join(
        [
            '<h1>Compare runs</h1><p class="muted">Differences are from the first run.</p>',
            table(headers, rows, cls="compare"),
            "<section><h2>Significance on the shared held-out set</h2>",
            evaluation.significance_section(runs),
            "</section><section><h2>Per class</h2>",
            evaluation.per_class_section(runs, names),
            "</section>",
        ]
    )


# Tuning jobs


def jobs_page(jobs: list[dict], now: datetime) -> str:
    if not jobs:
        return "<h1>Tuning jobs</h1>" + empty("No tuning jobs.")
    rows = []
    for job in sorted(jobs, key=lambda j: (j["metadata"]["namespace"], j["metadata"]["name"])):
        status = job.get("status") or {}
        meta = job["metadata"]
        best = status.get("bestTrial") or {}
        rows.append(
            [
                f'<a href="{e(job_href(meta["namespace"], meta["name"]))}">{e(meta["name"])}</a>',
                e(meta["namespace"]),
                phase_badge(status.get("phase") or "Running"),
                counts_text(status.get("trialCounts") or {}),
                number(best.get("value")),
                e(views.age(meta.get("creationTimestamp"), now)[1]),
            ]
        )
    return "<h1>Tuning jobs</h1>" + table(["Name", "Namespace", "Phase", "Trials", "Best value", "Age"], rows)


def counts_text(counts: dict) -> str:
    shown = [
        f'<span class="count state-{e(state)}">{e(count)} {e(state)}</span>'
        for state, count in counts.items()
        if count
    ]
    return " ".join(shown) or "none yet"


def history_chart(trials: list[dict], maximize: bool, metric: str) -> str:
    """Each complete trial's value (dots) and the best so far (a step line): the optimization history."""
    points = [
        (t["number"], t["value"])
        for t in trials
        if t.get("state") == "COMPLETE" and t.get("value") is not None
    ]
    if not points:
        return empty("No complete trial yet.")
    width, height, pad, left = 360, 180, 30, 52
    numbers = [t["number"] for t in trials]
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.01, high + 0.01
    span_n = max(1, max(numbers) - min(numbers))

    def x(n: float) -> float:
        return left + (n - min(numbers)) / span_n * (width - left - pad)

    def y(v: float) -> float:
        return height - pad - (v - low) / (high - low) * (height - 2 * pad)

    dots = "".join(
        f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3.5" class="dot"><title>trial {n}: {number(v)}'
        f"</title></circle>"
        for n, v in points
    )
    best = views.best_so_far(trials, maximize)
    path = " ".join(
        f"{x(t['number']):.1f},{y(b):.1f}" for t, b in zip(trials, best, strict=True) if b is not None
    )
    return (
        f'<svg class="chart wide" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Optimization history: {e(metric)} of each trial and the best so far">'
        f'<line x1="{left}" x2="{width - pad}" y1="{height - pad}" y2="{height - pad}" class="axis"/>'
        f'<line x1="{left}" x2="{left}" y1="{pad / 2}" y2="{height - pad}" class="axis"/>'
        f'<polyline points="{path}" class="best"/>{dots}'
        f'<text x="{left - 4}" y="{y(high) + 4:.1f}" text-anchor="end">{number(high)}</text>'
        f'<text x="{left - 4}" y="{y(low) + 4:.1f}" text-anchor="end">{number(low)}</text>'
        f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">trial</text></svg>'
    )


def job_page(job: dict, trials: list[dict], plots: list[str], events: list[dict]) -> str:
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    namespace = meta["namespace"]
    objective = spec.get("objective") or {}
    metric = objective.get("metric", "value")
    maximize = objective.get("direction", "maximize") == "maximize"
    best = status.get("bestTrial") or {}
    if not best:
        curve = [t for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None]
        if curve:
            best = (max if maximize else min)(curve, key=lambda t: t["value"])
    best_text = empty("No complete trial yet.")
    if best:
        params = ", ".join(f"{k} = {number(v)}" for k, v in (best.get("params") or {}).items())
        run = best.get("trainingRun")
        best_text = _facts(
            [
                ("Trial", e(best.get("number"))),
                (e(metric), f"<strong>{number(best.get('value'))}</strong>"),
                ("Parameters", e(params or "—")),
                ("Run", f'<a href="{e(run_href(namespace, run))}">{e(run)}</a>' if run else "—"),
            ]
        )
    rows = []
    for trial in trials:
        run = trial.get("trainingRun")
        params = ", ".join(f"{k.split('.')[-1]} {number(v)}" for k, v in (trial.get("params") or {}).items())
        rows.append(
            [
                e(trial["number"]),
                f'<span class="state state-{e(str(trial.get("state")).lower())}">'
                f"{e(trial.get('state'))}</span>",
                number(trial.get("value")),
                e(params or "—"),
                f'<a href="{e(run_href(namespace, run))}">{e(run)}</a>' if run else "—",
            ]
        )
    pictures = "".join(
        f'<img class="plot" src="{e(job_href(namespace, meta["name"]))}/{e(p)}" '
        f'alt="{e(p.removesuffix(".png").replace("_", " "))} of the study">'
        for p in plots
    )
    reason = _reason(status)
    return "".join(
        [
            f"<h1>{e(meta['name'])} {phase_badge(status.get('phase') or 'Running')}</h1>",
            reason,
            _facts(
                [
                    ("Namespace", e(namespace)),
                    ("Objective", e(f"{objective.get('direction', 'maximize')} {metric}")),
                    ("Trials", counts_text(status.get("trialCounts") or {})),
                    ("Budget", e(f"{spec.get('maxTrials') or '—'} trials")),
                ]
            ),
            "<section><h2>Best so far</h2>",
            best_text,
            "</section>",
            "<section><h2>Study</h2>",
            history_chart(trials, maximize, metric),
            pictures,
            "</section>",
            "<section><h2>Trials</h2>",
            table(["#", "State", e(metric), "Parameters", "Run"], rows, cls="trials stack")
            if rows
            else empty("No trials yet."),
            "</section>",
            "<section><h2>Events</h2>",
            events_section(events),
            "</section>",
        ]
    )


# Model deployments


def deployments_page(deployments: list[dict], now: datetime) -> str:
    if not deployments:
        return "<h1>Model deployments</h1>" + empty("No model deployments (they exist on a cluster).")
    rows = []
    for item in sorted(deployments, key=lambda d: (d["metadata"]["namespace"], d["metadata"]["name"])):
        meta, status = item["metadata"], item.get("status") or {}
        canary = status.get("canary") or {}
        rows.append(
            [
                f'<a href="{e(deployment_href(meta["namespace"], meta["name"]))}">{e(meta["name"])}</a>',
                e(meta["namespace"]),
                e(f"{status.get('readyReplicas') or 0}/{status.get('replicas') or 0}"),
                e((status.get("currentModel") or {}).get("trainingRun", "—")),
                e(f"{canary['candidate']} at {canary['weight']} %" if canary else "—"),
                e(views.age(meta.get("creationTimestamp"), now)[1]),
            ]
        )
    return "<h1>Model deployments</h1>" + table(
        ["Name", "Namespace", "Ready", "Stable model", "Canary", "Age"], rows
    )


def _model_facts(model: dict | None, namespace: str) -> str:
    if not model:
        return empty("None.")
    run = model.get("trainingRun", "")
    return _facts(
        [
            ("Run", f'<a href="{e(run_href(namespace, run))}">{e(run)}</a>'),
            ("Held-out accuracy", number(model.get("accuracy"))),
            ("Artifact", f"<code>{e(model.get('uri', '—'))}</code>"),
            ("sha256", f'<code class="hash">{e(model.get("sha256", "—"))}</code>'),
        ]
    )


def deployment_page(item: dict, events: list[dict], pods: list[dict] | None = None) -> str:
    meta, status = item["metadata"], item.get("status") or {}
    namespace = meta["namespace"]
    canary = status.get("canary") or {}
    if canary:
        analysis = canary.get("lastAnalysis") or {}
        error_rate = analysis.get("errorRate")
        canary_html = _facts(
            [
                (
                    "Candidate",
                    f'<a href="{e(run_href(namespace, canary["candidate"]))}">{e(canary["candidate"])}</a>',
                ),
                ("Step", e(f"{canary.get('step')} of {canary.get('steps')}")),
                (
                    "Weight",
                    f'<meter min="0" max="100" value="{e(canary.get("weight", 0))}"></meter> '
                    f"{e(canary.get('weight', 0))} %",
                ),
                ("Phase", e(canary.get("phase", "—"))),
                ("Analyses passed", e(canary.get("analysesPassed", 0))),
            ]
        )
        if analysis:
            canary_html += "<h3>Latest analysis</h3>" + table(
                ["Time", "Verdict", "Requests", "Error rate", "p95 latency", "Message"],
                [
                    [
                        e(analysis.get("time", "")),
                        e(analysis.get("verdict", "")),
                        e(analysis.get("requests", 0)),
                        "—" if error_rate is None else f"{error_rate * 100:.2f} %",
                        "—"
                        if analysis.get("latencyP95Ms") is None
                        else f"{number(analysis['latencyP95Ms'])} ms",
                        e(analysis.get("message", "")),
                    ]
                ],
            )
        sample = canary.get("sample") or {}
        if sample:
            canary_html += (
                f'<p class="muted">Window started {e(sample.get("time", ""))} at '
                f"{number(sample.get('requests'))} requests, {number(sample.get('errors'))} errors.</p>"
            )
    else:
        canary_html = empty("No canary in progress.")
    history = status.get("history") or []
    history_html = (
        table(
            ["Time", "Action", "Run", "Previous", "Reason", "Message"],
            [
                [
                    e(h.get("time", "")),
                    e(h.get("action", "")),
                    _run_link(namespace, h.get("trainingRun", "")),
                    e(h.get("previous") or "—"),
                    e(h.get("reason", "")),
                    e(h.get("message", "")),
                ]
                for h in history
            ],
        )
        if history
        else empty("No promotion or rollback yet.")
    )
    rejected = status.get("rejected") or []
    rejected_html = (
        (
            "<ul>"
            + "".join(f'<li><a href="{e(run_href(namespace, r))}">{e(r)}</a></li>' for r in rejected)
            + "</ul>"
        )
        if rejected
        else empty("No candidate was rolled back.")
    )
    conditions = (
        table(
            ["Type", "Status", "Reason", "Message"],
            [
                [
                    e(c.get("type", "")),
                    e(c.get("status", "")),
                    e(c.get("reason", "")),
                    e(c.get("message", "")),
                ]
                for c in status.get("conditions") or []
            ],
        )
        if status.get("conditions")
        else empty("No conditions yet.")
    )
    replicas = _facts(
        [
            ("Ready", e(f"{status.get('readyReplicas') or 0} of {status.get('replicas') or 0}")),
            ("Updated", e(status.get("updatedReplicas") or 0)),
            ("Available", e(status.get("availableReplicas") or 0)),
            ("Service", e(status.get("url") or status.get("serviceName") or "—")),
        ]
    )
    return "".join(
        [
            f"<h1>{e(meta['name'])}</h1>",
            _facts([("Namespace", e(namespace))]),
            '<div class="split"><section><h2>Stable</h2>',
            _model_facts(status.get("currentModel"), namespace),
            "</section><section><h2>Candidate</h2>",
            _model_facts(status.get("candidateModel"), namespace),
            "</section></div>",
            "<section><h2>Canary</h2>",
            canary_html,
            "</section>",
            "<section><h2>Replicas</h2>",
            replicas,
            "</section>",
            "<section><h2>Conditions</h2>",
            conditions,
            "</section>",
            "<section><h2>Promotion history</h2>",
            history_html,
            "</section>",
            "<section><h2>Rejected candidates</h2>",
            rejected_html,
            "</section>",
            *(
                ["<section><h2>Server pods</h2>", pods_section(pods), "</section>"]
                if pods is not None
                else []
            ),
            "<section><h2>Events</h2>",
            events_section(events),
            "</section>",
        ]
    )
