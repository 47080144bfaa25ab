"""Pydantic models of the protocol's bodies, for the OpenAPI document.

The infer endpoint reads and writes its JSON with orjson and validates it in `codec` (pydantic would
cost more than the forward pass of a small model), so these models describe the bodies for
documentation and schema-driven clients; the small bodies (health, metadata) are validated by them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong, naming the field.")


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks the batch dimension.")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Beyond the protocol: accepted input datatypes, classes, normalization, sha256.",
    )


class RequestInput(BaseModel):
    name: str = Field(description="Always `input`.")
    shape: list[int] = Field(description="[N, 3, H, W].")
    datatype: str = Field(description="FP32 (already normalized) or UINT8 (raw pixels 0..255).")
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size` with the binary tensor data extension."
    )
    data: list[Any] | None = Field(None, description="Row-major values, flat or nested to match the shape.")


class RequestOutput(BaseModel):
    name: str = Field(description="`probabilities` or `labels`.")
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="Which outputs to return; default all.")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class LabelScore(BaseModel):
    label: str
    score: float


class ImagePrediction(BaseModel):
    id: str = Field(description="The request id of this image: label it at /v2/models/{name}/feedback.")
    file: str
    label: str
    score: float
    top_k: list[LabelScore]


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    predictions: list[ImagePrediction]


class PredictQuery(BaseModel):
    """The query parameters of /predict."""

    top_k: int | None = Field(None, ge=1, le=1000, description="Labels per image (default 5).")
    model: str | None = Field(None, description="Model name (default: the model served).")


class FeedbackRequest(BaseModel):
    id: str = Field(description="The request id a prediction answered with (`id`, X-Request-Id).")
    label: str = Field(description="The true class: one of the model's classes.")


class FeedbackResponse(BaseModel):
    id: str
    label: str


class DriftStatus(BaseModel):
    window: int = Field(description="Predictions in the window (at most the configured size).")
    predictedShare: dict[str, float] = Field(description="Share of each predicted class in the window.")
    trainingShare: dict[str, float] = Field(description="Share of each class in the training data.")
    divergence: float = Field(description="Jensen-Shannon divergence (base 2, 0..1) of the two.")
    meanTopScore: float = Field(description="Mean top-1 score in the window.")


class CaptureStatus(BaseModel):
    enabled: bool
    sampleRate: float
    captured: int = Field(description="Captured requests in the destination (written by any replica).")
    labelled: int = Field(description="Captured requests with a label.")
    labelledByClass: dict[str, int]
    lastLabelAt: str | None = Field(description="When the latest label was written (RFC 3339).")
    drift: DriftStatus


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "PNG or JPEG images.",
                    }
                },
                "required": ["files"],
            }
        }
    },
}


def _json(model: type[BaseModel]) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def _answers(success: str, model: type[BaseModel], errors: dict[str, str]) -> dict:
    return {
        "200": {"description": success, "content": _json(model)},
        **{code: {"description": text, "content": _json(ErrorResponse)} for code, text in errors.items()},
    }


def predict_path_item() -> dict:
    """The OpenAPI path item of /predict (served by a plain route, see `app`)."""
    query = PredictQuery.model_json_schema()
    errors = {
        "400": "A malformed multipart body, an image that cannot be decoded, or a bad query parameter.",
        "404": "No model by that name.",
        "413": "Body over the size limit, or too many images.",
        "415": "Not multipart/form-data, or a file that is not PNG or JPEG.",
        "503": "The model is not ready.",
    }
    return {
        "post": {
            "tags": ["Images"],
            "summary": "Predict",
            "description": "The top labels of each uploaded image, decoded and resized as in training.",
            # FastAPI's generated id, which this route had when FastAPI served it: generated clients keep it.
            "operationId": "predict_predict_post",
            "parameters": [
                {
                    "name": name,
                    "in": "query",
                    "required": name in query.get("required", ()),
                    "schema": schema,
                    "description": schema.get("description", ""),
                }
                for name, schema in query["properties"].items()
            ],
            "requestBody": UPLOAD_BODY,
            "responses": _answers("The top labels of each image, in upload order.", PredictResponse, errors),
        }
    }


def infer_path_item(path: str) -> dict:
    """The OpenAPI path item of an infer route (served by a plain route, see `app`)."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in ("name", "version")
        if "{" + name + "}" in path
    ]
    errors = {
        "400": "Malformed request: JSON, datatype, shape, data length; the message names the field.",
        "404": "No model by that name (or version).",
        "413": "Body over the size limit, or too many images.",
        "503": "The model is not ready.",
    }
    return {
        "post": {
            "tags": ["Open Inference Protocol v2"],
            "summary": "Infer",
            "description": "Class probabilities and labels for a batch of images: FP32 [N, 3, H, W] already "
            "normalized, or UINT8 raw pixels that the server normalizes.",
            "operationId": "infer_version" if "{version}" in path else "infer",
            "parameters": parameters,
            "requestBody": {"required": True, "content": _json(InferenceRequest)},
            "responses": _answers("Probabilities and labels.", InferenceResponse, errors),
        }
    }


def add_components(openapi: dict, *models: type[BaseModel]) -> dict:
    """Put models that no route declares as a parameter (bodies read by hand) into the components."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return openapi
