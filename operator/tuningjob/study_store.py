"""The study storage the operator owns, and the gRPC storage proxy it serves to trial pods.

The operator opens the storage (SQLite on the study volume, or the database in $CRUCIBLE_STUDY_URL)
and runs Optuna's gRPC storage proxy on it in a thread of its own process, on `tuning.proxyPort`.
Both the operator's reconcile steps and the proxy use one storage object, so they share its cache.
The proxy starts with the first TuningJob handled, not with the operator: an operator that never
tunes never opens a study file. It stops with the operator (kopf's cleanup).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, get_storage

from crucible.operator.tuningjob.config import TuningConfig

logger = logging.getLogger(__name__)
STOP_GRACE_S = 2.0
# SQLite: wait for the file's lock rather than fail (the proxy's threads and the operator write it).
SQLITE_LOCK_TIMEOUT_S = 60


def open_storage(url: str) -> BaseStorage:
    """Optuna's cached storage for `url` (what its docs ask the proxy to serve)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
        )
        return get_storage(storage)
    return get_storage(url)


class StudyStore:
    """One storage and its proxy, started once on first use."""

    def __init__(self, config: TuningConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._storage: BaseStorage | None = None
        self._server = None

    def storage(self) -> BaseStorage:
        """The storage, opening it and starting the proxy the first time (blocking: call in a thread)."""
        with self._lock:
            if self._storage is None:
                storage = open_storage(self.config.study.url())
                self._server = self._serve(storage)
                self._storage = storage
            return self._storage

    def _serve(self, storage: BaseStorage):  # type: ignore[no-untyped-def]
        # `run_grpc_proxy_server` is `make_server(...)`, `start()`, then blocks for ever; its parts
        # let the operator stop the proxy when it stops (a restart binds the port again).
        from optuna.storages._grpc.server import make_server

        server = make_server(storage, self.config.proxy_bind, self.config.proxy_port)
        server.start()
        logger.info(
            "study proxy for %s listening on %s:%s",
            _safe(self.config.study.url()),
            self.config.proxy_bind,
            self.config.proxy_port,
        )
        return server

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop(STOP_GRACE_S).wait()
                self._server = None
            if self._storage is not None:
                inner = getattr(self._storage, "_backend", self._storage)
                if hasattr(inner, "remove_session"):
                    inner.remove_session()
                engine = getattr(inner, "engine", None)
                if engine is not None:
                    engine.dispose()
                self._storage = None


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, _, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
