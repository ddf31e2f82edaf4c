"""The metrics stream into an MLflow tracking server or store (optional: needs `mlflow-skinny`).

One MLflow run per relaytrain run, found again by its tag `relaytrain.store` (the store URL), so
calling this again during a run adds only the steps logged since: the tag `relaytrain.logged_step`
remembers the last one. Parameters are the run spec's fields; metric keys are the TensorBoard tags
(`train/loss`, `val/loss`, `cost/usd`, ...). The MLflow run ends (FINISHED) when the run is done.
"""

from __future__ import annotations

from relaytrain_runtime import RelayError
from relaytrain_runtime.report.tensorboard import scalars
from relaytrain_runtime.report.view import RunView

STORE_TAG = "relaytrain.store"
LOGGED_TAG = "relaytrain.logged_step"
BATCH = 1000  # MLflow's limit of metrics per log_batch call


def require_mlflow() -> None:
    """Raise the one-line RelayError when mlflow is not installed (checked before a run starts, not after)."""
    try:
        import mlflow.tracking  # noqa: F401
    except ModuleNotFoundError:
        raise RelayError("MLflow logging needs mlflow-skinny (pip install mlflow-skinny)") from None


def _client(uri: str):
    require_mlflow()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _mlflow_run(client, run: RunView, experiment: str):
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    url = run.store_url.replace("'", "")
    existing = client.search_runs([exp_id], filter_string=f"tags.`{STORE_TAG}` = '{url}'", max_results=1)
    if existing:
        return existing[0]
    created = client.create_run(exp_id, run_name=url.rstrip("/").rsplit("/", 1)[-1], tags={STORE_TAG: url})
    from mlflow.entities import Param

    client.log_batch(created.info.run_id, params=[Param(k, str(v)) for k, v in sorted(run.spec.to_dict().items())])
    return created


def log_to_mlflow(run: RunView, uri: str, experiment: str = "relaytrain") -> dict:
    """Log the run's new scalars to MLflow at `uri`; returns {"run_id", "logged", "last_step"}."""
    client = _client(uri)
    from mlflow.entities import Metric

    try:
        mlrun = _mlflow_run(client, run, experiment)
        run_id = mlrun.info.run_id
        done_before = int(mlrun.data.tags.get(LOGGED_TAG, -1))
        new = [(tag, value, step, wall) for tag, value, step, wall in scalars(run) if step > done_before]
        metrics = [Metric(tag, value, int(wall * 1000), step) for tag, value, step, wall in new]
        for i in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + BATCH])
        last = max([done_before] + [step for _, _, step, _ in new])
        client.set_tag(run_id, LOGGED_TAG, str(last))
        if run.newest.get("done"):
            client.set_terminated(run_id, "FINISHED")
    except RelayError:
        raise
    except Exception as exc:  # the tracking server's errors: one line, the run itself is untouched
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise RelayError(f"MLflow at {uri}: {type(exc).__name__}: {first}") from None
    return {"run_id": run_id, "logged": len(metrics), "last_step": last}
