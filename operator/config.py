"""Operator configuration: node pools, images, the artifacts store, and one section per kind.

Read from a YAML file (`crucible operator --config FILE`, or the file named by $CRUCIBLE_OPERATOR_CONFIG;
the Helm chart mounts its values there). Every key has a default, so an empty file is a valid config
with the two pools `cpu` and `gpu`. The sections live beside what they configure (`kube/config.py` for
what every kind shares, `<kind>/config.py` for one kind's); this module puts them together.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from crucible.api.common import SpecModel
from crucible.api.manifest import InvalidSpec, describe_validation_error
from crucible.operator.kube.config import ArtifactsConfig, ImagesConfig, NodePool, default_pools
from crucible.operator.modeldeployment.config import PromotionConfig
from crucible.operator.modeldeployment.retraining.config import RetrainingConfig
from crucible.operator.trainingrun.config import TrainingConfig
from crucible.operator.tuningjob.config import TuningConfig

CONFIG_ENV = "CRUCIBLE_OPERATOR_CONFIG"


class OperatorConfig(SpecModel):
    """Everything the operator needs to know about the cluster it runs in."""

    node_pools: dict[str, NodePool] = Field(default_factory=default_pools, description="Pools by name.")
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)

    def pool(self, name: str, field: str) -> NodePool:
        """The pool named by a spec; InvalidSpec naming `field` and the pools there are otherwise."""
        if name not in self.node_pools:
            allowed = ", ".join(sorted(self.node_pools))
            raise InvalidSpec(field, f"node pool {name!r} is not configured; allowed values: {allowed}")
        return self.node_pools[name]

    def images_for(self, pool: NodePool) -> ImagesConfig:
        return pool.images or self.images


def load_config(path: str | Path | None = None) -> OperatorConfig:
    """The configuration in `path` (or $CRUCIBLE_OPERATOR_CONFIG); defaults when neither is set."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return OperatorConfig()
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise InvalidSpec("--config", f"no such file: {path}") from None
    except yaml.YAMLError as error:
        raise InvalidSpec(str(path), f"invalid YAML: {error}") from None
    if not isinstance(document, dict):
        raise InvalidSpec(str(path), "must be a mapping with nodePools, images, artifacts, training")
    try:
        return OperatorConfig.model_validate(document)
    except ValidationError as error:
        text = describe_validation_error(error, OperatorConfig, root="config")
        field, _, detail = text.partition(": ")
        raise InvalidSpec(field, detail) from None
