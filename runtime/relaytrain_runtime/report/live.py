"""A node's own commits, live: TensorBoard event files and MLflow, written as the node commits.

The deployment configures it (the kit sets these from the blueprint; `relaytrain.worker.node_environment`):

    RELAYTRAIN_TENSORBOARD_DIR   write TensorBoard event files here (`relaytrain-runtime node --tensorboard DIR`)
    RELAYTRAIN_MLFLOW_URI        log the stream to this MLflow tracking URI (`--mlflow URI`; needs mlflow-skinny)

After each commit the node (rank 0) appends that commit's stream records (`metrics/<gen>-<leg>`) and its
cost to one event file per node process (TensorBoard merges the files of a directory), and brings the
MLflow run up to date (`report.tracking.log_to_mlflow`, idempotent by step). Telemetry never stops
training: a failure is one warning line on stderr.
"""

from __future__ import annotations

import os
import sys

from relaytrain_runtime.contract.metrics import read_records
from relaytrain_runtime.report.tensorboard import record_scalars
from relaytrain_runtime.store import open_store

TENSORBOARD_DIR_ENV = "RELAYTRAIN_TENSORBOARD_DIR"
MLFLOW_URI_ENV = "RELAYTRAIN_MLFLOW_URI"


class LiveLog:
    """Publishes commits of the run in `store` (a Store or its URL), each from its own metrics object."""

    def __init__(self, store, *, tensorboard_dir: str | None = None, mlflow_uri: str | None = None):
        self.store = open_store(store) if isinstance(store, str) else store
        self.tensorboard_dir = tensorboard_dir or os.environ.get(TENSORBOARD_DIR_ENV) or None
        self.mlflow_uri = mlflow_uri or os.environ.get(MLFLOW_URI_ENV) or None
        self._writer = None

    @property
    def enabled(self) -> bool:
        return bool(self.tensorboard_dir or self.mlflow_uri)

    def commit(self, manifest: dict) -> None:
        """Publish the commit whose manifest is `manifest` (one of this worker's)."""
        try:
            if self.tensorboard_dir:
                self._tensorboard(manifest)
            if self.mlflow_uri:
                from relaytrain_runtime.report.tracking import log_to_mlflow
                from relaytrain_runtime.report.view import load_run

                log_to_mlflow(load_run(self.store), self.mlflow_uri)
        except Exception as exc:  # (any failure of a tracking server or disk: telemetry never stops training)
            print(f"relaytrain: live metrics of gen {manifest.get('gen')} not published: {exc}", file=sys.stderr,
                  flush=True)

    def _tensorboard(self, manifest: dict) -> None:
        if self._writer is None:
            from tensorboard.summary import Writer

            os.makedirs(self.tensorboard_dir, exist_ok=True)
            self._writer = Writer(self.tensorboard_dir)
        wall = float(manifest["created"])
        records = [r for r in read_records(self.store, {manifest["gen"]}) if r["leg"] == manifest["leg_id"]]
        points = [p for rec in records if isinstance(rec.get("step"), int) for p in record_scalars(rec, wall)]
        if isinstance(manifest.get("cost_usd"), (int, float)):
            points.append(("cost/usd", float(manifest["cost_usd"]), manifest["step"], wall))
        for tag, value, step, wall_time in points:
            self._writer.add_scalar(tag, value, step, wall_time=wall_time)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
