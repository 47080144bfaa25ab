"""The console's HTTP layer: `create_app(source)` builds a read-only FastAPI app of pages and JSON.

Every page is whole HTML that works without JavaScript; a small script asks the same URL for just its
`<main>` part (header X-Console-Fragment) and swaps it in when its digest changed, so pages follow
runs as they train without reloading or flashing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from html import escape
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

import crucible
from crucible.console import pages, views
from crucible.console.source import NotFound, Source
from crucible.webdocs import install_offline_docs

PLURALS = {"runs": "TrainingRun", "tuningjobs": "TuningJob", "deployments": "ModelDeployment"}
NAV = (("runs", "Runs"), ("tuningjobs", "Tuning jobs"), ("deployments", "Deployments"))
STATIC = {"console.css": "text/css", "console.js": "text/javascript", "favicon.svg": "image/svg+xml"}


def _static(name: str) -> bytes:
    return resources.files("crucible.console").joinpath("static", name).read_bytes()


def layout(title: str, section: str, main: str, live: bool, source: str, refresh_ms: int, root: str) -> str:
    links = "".join(
        f'<a href="{path}"{" aria-current=page" if path == section else ""}>{label}</a>'
        for path, label in NAV
    )
    digest = hashlib.sha256(main.encode()).hexdigest()[:16]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<base href="{escape(root)}/">
<title>{escape(title)} · Crucible console</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="static/console.css">
</head>
<body>
<header>
  <a class="brand" href="runs"><img src="favicon.svg" alt="">Crucible console</a>
  <nav aria-label="Sections">{links}</nav>
  <span class="source">{escape(source)} · read-only · <a href="docs" style="color:inherit">API</a></span>
</header>
<p id="stale" role="status" hidden>The console cannot be reached: this page may be out of date.</p>
<main data-live="{str(live).lower()}" data-digest="{digest}" data-refresh-ms="{refresh_ms}"
      aria-live="polite">{main}</main>
<script src="static/console.js"></script>
</body>
</html>"""


def create_app(source: Source, refresh_seconds: float = 2.0) -> FastAPI:
    """The console over `source` (a cluster or a local runs/ directory); read-only."""
    app = FastAPI(
        title="Crucible console",
        version=crucible.__version__,
        description="Read-only pages and JSON for TrainingRuns, TuningJobs and ModelDeployments.",
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    refresh_ms = int(refresh_seconds * 1000)

    def page(
        request: Request, title: str, section: str, main: str, live: bool, status: int = 200
    ) -> Response:
        digest = hashlib.sha256(main.encode()).hexdigest()[:16]
        headers = {
            "X-Console-Live": str(live).lower(),
            "X-Console-Digest": digest,
            "Cache-Control": "no-store",
        }
        if request.headers.get("X-Console-Fragment") == "main":
            return HTMLResponse(main, status_code=status, headers=headers)
        root = request.scope.get("root_path", "")
        html = layout(title, section, main, live, source.description, refresh_ms, root)
        return HTMLResponse(html, status_code=status, headers=headers)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(error)}, status_code=404)
        return page(request, "Not found", "", f"<h1>Not found</h1><p>{escape(str(error))}</p>", False, 404)

    @app.exception_handler(views.BadQuery)
    async def bad_query(request: Request, error: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(error)}, status_code=400)
        body = (
            f'<h1>Cannot show this</h1><p class="reason">{escape(str(error))}</p>'
            '<p><a href="runs">All runs</a></p>'
        )
        return page(request, "Bad request", "", body, False, 400)

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("runs")

    @app.get("/runs", include_in_schema=False)
    def runs_page(
        request: Request,
        label: str = "",
        sort: str = "age",
        order: str = Query("asc", pattern="^(asc|desc)$"),
    ) -> Response:
        runs = source.list("TrainingRun")
        main = pages.runs_page(runs, datetime.now(UTC), {"label": label, "sort": sort, "order": order})
        return page(request, "Training runs", "runs", main, any(views.is_live(run) for run in runs))

    @app.get("/runs/{namespace}/{name}", include_in_schema=False)
    def run_page(request: Request, namespace: str, name: str) -> Response:
        run = source.get("TrainingRun", namespace, name)
        events = source.events("TrainingRun", namespace, name)
        serving = [
            item
            for item in source.list("ModelDeployment")
            if item["metadata"]["namespace"] == namespace and name in _served_runs(item)
        ]
        has_report = source.file("TrainingRun", namespace, name, "report.png") is not None
        pods = source.pods("TrainingRun", namespace, name) if source.has_pods else None
        main = pages.run_page(run, events, has_report, serving, pods)
        return page(request, name, "runs", main, views.is_live(run))

    @app.get("/runs/{namespace}/{name}/report.png", include_in_schema=False)
    def run_report(namespace: str, name: str) -> Response:
        return _picture(source.file("TrainingRun", namespace, name, "report.png"))

    @app.get("/compare", include_in_schema=False)
    def compare_page(request: Request, run: Annotated[list[str], Query()] = []) -> Response:  # noqa: B006
        chosen = [source.get("TrainingRun", *_namespaced(ident)) for ident in run]
        refusals = views.comparison_refusals(chosen)
        main = pages.compare_page(chosen, refusals)
        live = any(views.is_live(item) for item in chosen)
        return page(request, "Compare runs", "runs", main, live, 409 if refusals and len(chosen) > 1 else 200)

    @app.get("/tuningjobs", include_in_schema=False)
    def jobs_page(request: Request) -> Response:
        jobs = source.list("TuningJob")
        main = pages.jobs_page(jobs, datetime.now(UTC))
        return page(request, "Tuning jobs", "tuningjobs", main, any(views.is_live(job) for job in jobs))

    @app.get("/tuningjobs/{namespace}/{name}", include_in_schema=False)
    def job_page(request: Request, namespace: str, name: str) -> Response:
        job = source.get("TuningJob", namespace, name)
        trials = views.trials_of(job, source.list("TrainingRun"))
        plots = [
            p
            for p in ("optimization_history.png", "param_importances.png")
            if source.file("TuningJob", namespace, name, p) is not None
        ]
        main = pages.job_page(job, trials, plots, source.events("TuningJob", namespace, name))
        live = views.is_live(job) or any(t.get("state") == "RUNNING" for t in trials)
        return page(request, name, "tuningjobs", main, live)

    @app.get("/tuningjobs/{namespace}/{name}/{picture}", include_in_schema=False)
    def job_picture(namespace: str, name: str, picture: str) -> Response:
        return _picture(source.file("TuningJob", namespace, name, picture))

    @app.get("/deployments", include_in_schema=False)
    def deployments_page(request: Request) -> Response:
        items = source.list("ModelDeployment")
        main = pages.deployments_page(items, datetime.now(UTC))
        return page(request, "Model deployments", "deployments", main, any(views.is_live(i) for i in items))

    @app.get("/deployments/{namespace}/{name}", include_in_schema=False)
    def deployment_page(request: Request, namespace: str, name: str) -> Response:
        item = source.get("ModelDeployment", namespace, name)
        pods = source.pods("ModelDeployment", namespace, name)
        main = pages.deployment_page(item, source.events("ModelDeployment", namespace, name), pods)
        return page(request, name, "deployments", main, views.is_live(item))

    @app.get("/api/{plural}", tags=["Resources"], summary="Every object of a kind")
    def api_list(plural: str) -> Response:
        return JSONResponse({"items": [_public(item) for item in source.list(_kind(plural))]})

    @app.get("/api/{plural}/{namespace}/{name}", tags=["Resources"], summary="One object, with its Events")
    def api_get(plural: str, namespace: str, name: str) -> Response:
        kind = _kind(plural)
        item = _public(source.get(kind, namespace, name))
        return JSONResponse({**item, "events": source.events(kind, namespace, name)})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise NotFound(f"no file {name}")
        return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    @app.get("/favicon.svg", include_in_schema=False)
    def favicon() -> Response:
        return Response(
            _static("favicon.svg"), media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    return app


def _kind(plural: str) -> str:
    if plural not in PLURALS:
        raise NotFound(f"no such kind {plural!r}: one of {', '.join(PLURALS)}")
    return PLURALS[plural]


def _namespaced(ident: str) -> tuple[str, str]:
    namespace, slash, name = ident.partition("/")
    if not slash or not namespace or not name:
        raise views.BadQuery(f"run: {ident!r} is not namespace/name")
    return namespace, name


def _served_runs(deployment: dict) -> set[str]:
    status = deployment.get("status") or {}
    models = [status.get("currentModel") or {}, status.get("candidateModel") or {}]
    return {model["trainingRun"] for model in models if model.get("trainingRun")}


def _public(item: dict) -> dict:
    """The object as the API shows it: the source's own bookkeeping (a local directory) left out."""
    return {key: value for key, value in item.items() if key != "directory"}


def _picture(path) -> Response:
    if path is None:
        raise NotFound("no such picture")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})
