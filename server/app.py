"""The HTTP layer: `create_app` builds the FastAPI app. Endpoints only translate HTTP to data-plane
calls and back; errors are raised, and mapped to responses in one table (`errors`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.routing import Match, Route
from starlette.types import Scope

import crucible
from crucible.server import codec, multipart
from crucible.server.capture_store import CaptureStore
from crucible.server.dataplane import DataPlane
from crucible.server.errors import (
    InvalidInput,
    ModelNotReady,
    UnsupportedMediaType,
    describe_validation,
    install_error_handlers,
)
from crucible.server.limits import BodySizeLimitMiddleware
from crucible.server.metrics import RequestMetricsMiddleware, ServerMetrics
from crucible.server.page import index_page
from crucible.server.repository import ModelRepository
from crucible.server.schemas import (
    CaptureStatus,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadata,
    ModelReadyResponse,
    PredictQuery,
    PredictResponse,
    ReadyResponse,
    ServerMetadata,
    add_components,
    infer_path_item,
    predict_path_item,
)
from crucible.server.settings import ServerSettings
from crucible.webdocs import install_offline_docs

REQUEST_ID_HEADER = "X-Request-Id"
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
DESCRIPTION = (
    "Serves a model trained by `crucible train`: the Open Inference Protocol v2 (REST) under `/v2`, "
    "image uploads at `/predict`, a page to try it at `/`, Prometheus metrics at `/metrics`."
)


def _errors(*codes: int) -> dict:
    return {code: {"model": ErrorResponse} for code in codes}


def _protocol_routes(plane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["Open Inference Protocol v2"])

    @router.get("/v2/health/live", response_model=LiveResponse)
    async def server_live() -> dict:
        return {"live": True}

    @router.get("/v2/health/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
    async def server_ready() -> JSONResponse:
        ready = plane.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @router.get("/v2", response_model=ServerMetadata)
    async def server_metadata() -> dict:
        return plane.server_metadata()

    @router.get("/v2/models/{name}", response_model=ModelMetadata, responses=_errors(404))
    async def model_metadata(name: str) -> dict:
        return plane.model_metadata(name)

    @router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_errors(404))
    async def model_version_metadata(name: str, version: str) -> dict:
        return plane.model_metadata(name, version)

    @router.get("/v2/models/{name}/ready", response_model=ModelReadyResponse, responses=_errors(404, 503))
    async def model_ready(name: str) -> dict:
        return _model_ready(plane, name, None)

    @router.post(
        "/v2/models/{name}/feedback",
        tags=["Labels"],
        response_model=FeedbackResponse,
        responses=_errors(400, 404, 409, 422, 503),
    )
    async def feedback(name: str, body: FeedbackRequest) -> dict:
        """Label a captured request: `id` is the request id a prediction answered with, `label` one of
        the model's classes (422 lists them)."""
        return await plane.feedback(name, body.id, body.label)

    @router.get(
        "/v2/models/{name}/capture",
        tags=["Labels"],
        response_model=CaptureStatus,
        responses=_errors(404, 503),
    )
    async def capture_status(name: str) -> dict:
        """Captured and labelled requests in the capture destination (all replicas), and the drift
        signal of this server's last predictions."""
        return await plane.capture_status(name)

    @router.get(
        "/v2/models/{name}/versions/{version}/ready",
        response_model=ModelReadyResponse,
        responses=_errors(404, 503),
    )
    async def model_version_ready(name: str, version: str) -> dict:
        return _model_ready(plane, name, version)

    return router


def _model_ready(plane: DataPlane, name: str, version: str | None) -> dict:
    if not plane.model_ready(name, version):
        raise ModelNotReady(name)
    return {"name": name, "ready": True}


class _RecordedRoute(Route):
    """A plain route that records itself in the scope when it matches, as FastAPI's routes do, so the
    request metrics can label its requests by route template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match != Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _infer_routes(plane: DataPlane) -> list[Route]:
    """The infer endpoint as plain Starlette routes: FastAPI's parameter solving would cost more per
    request than the forward pass of a small model, and the body is read by hand anyway. The OpenAPI
    document describes them (see `schemas.infer_path_item`)."""

    async def infer(request: Request) -> Response:
        body = await request.body()
        name, version = request.path_params["name"], request.path_params.get("version")
        result, json_length, request_id = await plane.infer(
            name, version, body, request.headers.get(codec.BINARY_HEADER)
        )
        if json_length is None:
            return Response(result, media_type="application/json", headers={REQUEST_ID_HEADER: request_id})
        return Response(
            result,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length), REQUEST_ID_HEADER: request_id},
        )

    return [_RecordedRoute(path, infer, methods=["POST"]) for path in INFER_PATHS]


async def _read_uploads(request: Request, max_images: int) -> list[tuple[str, bytes]]:
    """The files of a multipart body, as (filename, bytes), in order."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            "/predict expects multipart/form-data with PNG or JPEG files; "
            f"got {content_type or 'no content type'}"
        )
    return multipart.read_files(await request.body(), content_type, max_images)


def _predict_route(plane: DataPlane, settings: ServerSettings) -> Route:
    """/predict as a plain Starlette route, as infer is: FastAPI's route matching and parameter solving
    cost 0.1-0.2 ms a request, a third of decoding a 224-pixel JPEG. `schemas.predict_path_item`
    documents it."""

    async def predict(request: Request) -> Response:
        try:
            query = PredictQuery.model_validate(dict(request.query_params))
        except ValidationError as error:
            raise InvalidInput(describe_validation(error.errors(), ("query",))) from None
        files = await _read_uploads(request, settings.max_images)
        answer = await plane.predict_images(files, query.top_k, query.model)
        # One id per image; a request of several images lists them in order.
        request_ids = ", ".join(item["id"] for item in answer["predictions"])
        return Response(
            orjson.dumps(answer), media_type="application/json", headers={REQUEST_ID_HEADER: request_ids}
        )

    return _RecordedRoute("/predict", predict, methods=["POST"])


def _web_routes(plane: DataPlane, metrics: ServerMetrics, settings: ServerSettings) -> APIRouter:
    router = APIRouter()
    page = index_page(plane.repository.models(), settings)
    favicon = resources.files("crucible.server").joinpath("static/favicon.svg").read_bytes()

    @router.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/favicon.svg", include_in_schema=False)
    async def favicon_svg() -> Response:
        return Response(favicon, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @router.get("/metrics", tags=["Monitoring"], response_class=Response)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return router


def create_app(
    repository: ModelRepository,
    settings: ServerSettings | None = None,
    capture_store: CaptureStore | None = None,
) -> FastAPI:
    """The server for the models in `repository`; its inference workers run while the app's
    lifespan does (uvicorn, or `with TestClient(app)`). `capture_store` stands in for the store that
    `settings.capture.destination` names (tests and benchmarks inject failing ones)."""
    settings = settings or ServerSettings()
    metrics = ServerMetrics()
    plane = DataPlane(repository, settings, metrics, capture_store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.stop()

    # /docs and /redoc load Swagger UI and ReDoc from this Python environment, never from a CDN, so
    # they work on clusters without internet access.
    app = FastAPI(
        title="Crucible inference server",
        version=crucible.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.plane = plane
    app.state.metrics = metrics
    install_error_handlers(app)
    # The last added middleware is the outermost: metrics see the limit's own 413 answers too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    # Infer and predict first: the router tries routes in order, and these are the ones under load.
    app.router.routes[:0] = [*_infer_routes(plane), _predict_route(plane, settings)]
    app.include_router(_protocol_routes(plane))
    app.include_router(_web_routes(plane, metrics, settings))

    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = add_components(
                default_openapi(), InferenceRequest, InferenceResponse, PredictResponse, ErrorResponse
            )
            for path in INFER_PATHS:
                document["paths"][path] = infer_path_item(path)
            document["paths"]["/predict"] = predict_path_item()
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
