"""The operator's tuning settings (`tuning:` in the operator config): where studies live and where
trial pods reach them.

The operator process owns the study storage and serves it to trial pods through Optuna's gRPC
storage proxy, run in a thread of the operator (study_store.py). Trial pods never open the database:
SQLite on a ReadWriteOnce volume has one writer, and database credentials stay out of trial pods.
"""

from __future__ import annotations

import os

from pydantic import Field

from crucible.api.common import SpecModel
from crucible.api.manifest import InvalidSpec

STUDY_URL_ENV = "CRUCIBLE_STUDY_URL"
STUDY_FILE = "studies.db"


class SecretKey(SpecModel):
    """A key of a Secret in the operator's namespace."""

    name: str = Field(description="The Secret's name.")
    key: str = Field("url", description="The key holding the value.")


class StudyStorageConfig(SpecModel):
    """Where every TuningJob's Optuna study lives."""

    claim: str = Field(
        "crucible-study",
        description="The PersistentVolumeClaim mounted into the operator pod at `path` (SQLite).",
    )
    path: str = Field(
        "/var/lib/crucible/study", description="Where the study volume is mounted in the operator pod."
    )
    url_secret: SecretKey | None = Field(
        None,
        description=f"A database (PostgreSQL) instead of SQLite: the Secret holding its SQLAlchemy URL, "
        f"handed to the operator pod as ${STUDY_URL_ENV}.",
    )

    def url(self) -> str:
        """The storage URL: $CRUCIBLE_STUDY_URL when set, else SQLite on the study volume."""
        url = os.environ.get(STUDY_URL_ENV)
        if url:
            return url
        if self.url_secret is not None:
            raise InvalidSpec(
                "config.tuning.study.urlSecret", f"is set but ${STUDY_URL_ENV} is empty in the operator pod"
            )
        return f"sqlite:///{self.path.rstrip('/')}/{STUDY_FILE}"


class TuningConfig(SpecModel):
    """Studies of TuningJobs and the gRPC storage proxy their trial pods report through."""

    study: StudyStorageConfig = Field(default_factory=StudyStorageConfig)
    proxy_address: str = Field(
        "crucible-operator.crucible-system.svc",
        description="Host trial pods reach the proxy at: the DNS name of the operator's Service.",
    )
    proxy_port: int = Field(13000, ge=1, le=65535, description="Port of the proxy (Service and pod).")
    proxy_bind: str = Field("0.0.0.0", description="Address the proxy listens on in the operator pod.")

    def proxy_url(self) -> str:
        """What trial pods get as --study-storage."""
        return f"grpc://{self.proxy_address}:{self.proxy_port}"
