"""A TrainingRun and the operator configuration -> the plan of its trainer Job (pure, no API calls).

Everything a spec can get wrong for this cluster (an unknown pool, a gpu count the pool cannot give,
an artifact URI a pod cannot mount or reach) is found here and raised as InvalidSpec naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.api.trainingrun import TrainingRunSpec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.artifacts import (
    PVC_SCHEME,
    ArtifactLocation,
    mount_path,
    output_location,
    parse_pvc_uri,
)
from crucible.operator.kube.ownership import controller_of
from crucible.operator.kube.pods import Mount, PodPlan, check_quantities, node_pool
from crucible.s3 import S3Location

SPEC_DIR = "/etc/crucible"
SPEC_FILE = "spec.json"
DATA_ROOT = "/data"
# A trainer writing to S3 writes its files here first (the pod's /tmp emptyDir), then uploads them.
SCRATCH_OUTPUT_DIR = "/tmp/artifact"


@dataclass(frozen=True)
class TrainingPlan:
    name: str
    namespace: str
    spec_json: str
    output: ArtifactLocation
    output_dir: str
    pod: PodPlan
    # A TuningJob's trial: crucible-train's --study-* flags, so it reports to its study and can be pruned.
    study_args: tuple[str, ...] = ()


def _local_folder(uri: str, field: str) -> tuple[str, Mount | None]:
    """A pvc:// folder's path in the pod and its read-only mount; file:// and paths pass unchanged."""
    if not uri.startswith(PVC_SCHEME):
        if "://" in uri and not uri.startswith("file://"):
            scheme = uri.split("://", 1)[0]
            raise InvalidSpec(field, f"scheme {scheme}:// is not supported; allowed: pvc://, file://, a path")
        return uri, None
    location = parse_pvc_uri(uri, field)
    root = mount_path(DATA_ROOT, location.claim)
    return f"{root}/{location.path}", Mount(location.claim, root, read_only=True)


def _dataset_mount(spec: TrainingRunSpec) -> tuple[TrainingRunSpec, list[Mount]]:
    """pvc:// datasets (the primary and every extra source) are mounted read-only, one mount per claim,
    and the trainer is handed their local paths instead."""
    dataset = spec.dataset
    mounts: list[Mount] = []
    update: dict = {}
    if dataset.uri:
        update["uri"], mount = _local_folder(dataset.uri, "spec.dataset.uri")
        mounts += [mount] if mount else []
    sources = []
    for index, source in enumerate(dataset.sources):
        local, mount = _local_folder(source.uri, f"spec.dataset.sources[{index}].uri")
        # The name stays what the spec's uri gave, so the result names the source as the user does.
        sources.append(source.model_copy(update={"uri": local, "name": source.label}))
        mounts += [mount] if mount else []
    if sources:
        update["sources"] = sources
    if not mounts:
        return spec, []
    local = spec.model_copy(update={"dataset": dataset.model_copy(update=update)})
    return local, list(dict.fromkeys(mounts))


def plan_training(body: dict, config: OperatorConfig) -> TrainingPlan:
    """The trainer Job of a TrainingRun; InvalidSpec when the spec cannot run here."""
    metadata = body["metadata"]
    spec: TrainingRunSpec = parse_spec("TrainingRun", body.get("spec"))  # type: ignore[assignment]
    resources = spec.resources
    check_quantities(resources.cpu, resources.memory, "spec.resources")
    pool = node_pool(config, resources.node_pool, resources.gpu, "spec.resources")
    s3 = config.artifacts.s3
    output = output_location(
        spec.output.uri,
        config.artifacts.claim,
        metadata["namespace"],
        metadata["name"],
        metadata["uid"],
        s3.base if s3 else None,
    )
    local_spec, mounts = _dataset_mount(spec)
    if isinstance(output, S3Location):
        output_dir, pod_s3 = SCRATCH_OUTPUT_DIR, s3
    else:
        output_root = mount_path(config.artifacts.mount_path, output.claim)
        output_dir, pod_s3 = f"{output_root}/{output.path}", None
        mounts = [Mount(output.claim, output_root, read_only=False), *mounts]
    return TrainingPlan(
        name=metadata["name"],
        namespace=metadata["namespace"],
        spec_json=json.dumps(local_spec.to_dict(), indent=2, sort_keys=True),
        output=output,
        output_dir=output_dir,
        pod=PodPlan(
            pool, config.images_for(pool), resources.cpu, resources.memory, resources.gpu, mounts, pod_s3
        ),
        study_args=study_args(body, config),
    )


def study_args(body: dict, config: OperatorConfig) -> tuple[str, ...]:
    """The trial's study flags, from the annotations its TuningJob set. A TrainingRun spec has no such
    fields (a trial's spec is the template's), and only a run a TuningJob controls gets them: any other
    run could otherwise write into a study by annotating itself."""
    annotations = body["metadata"].get("annotations") or {}
    study, number = annotations.get(naming.STUDY), annotations.get(naming.TRIAL_NUMBER)
    if not study or number is None or controller_of(body, "TuningJob") is None:
        return ()
    return ("--study-storage", config.tuning.proxy_url(), "--study-name", study, "--trial-number", number)
