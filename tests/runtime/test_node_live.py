"""A node publishes each of its commits live: TensorBoard event files (read back with TensorBoard's own
EventAccumulator) and an MLflow file store, both equal to the run's committed metrics stream."""

import pytest

from relaytrain_runtime.contract.metrics import read_commits, read_stream
from relaytrain_runtime.store import open_store


@pytest.fixture(scope="module")
def live_node(tmp_path_factory, stdlib_dataset):
    """A 4-step tiny run trained by one in-process node that commits after every step, publishing live."""
    import shutil

    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.node import run_node
    from relaytrain_runtime.spec import RunSpec
    from tests.fixtures.runs import TINY_SPEC

    root = tmp_path_factory.mktemp("live")
    shutil.copytree(stdlib_dataset / "data", root / "store" / "data")
    store = open_store(str(root / "store"))
    Baton(store).init(RunSpec(**{**TINY_SPEC, "steps": 4, "eval_every": 2}))
    mlflow_uri = (root / "mlruns").as_uri()
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the file store in maintenance mode
    mp.setenv("RELAYTRAIN_TENSORBOARD_DIR", str(root / "tb"))  # the deployment's way; the MLflow URI as the option
    try:
        status = run_node(store.url, checkpoint_every=1e-9, cost_per_second=0.01, mlflow_uri=mlflow_uri)
        yield {"store": store, "status": status, "tb": root / "tb", "mlflow": mlflow_uri}
    finally:
        mp.undo()


def test_node_writes_tensorboard_events_after_each_commit(live_node):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    store, status = live_node["store"], live_node["status"]
    assert status["done"] and status["commits"] == 4
    files = list(live_node["tb"].glob("events.out.tfevents.*"))
    assert len(files) == 1  # one event file per node process
    events = EventAccumulator(str(live_node["tb"]))
    events.Reload()

    def series(tag):
        return [(e.step, pytest.approx(float(tensor_util.make_ndarray(e.tensor_proto)))) for e in events.Tensors(tag)]

    train = read_stream(store, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert series("train/loss") == [(r["step"], r["loss"]) for r in train]
    assert series("train/tokens_per_s") == [(r["step"], r["tokens_per_s"]) for r in train]
    assert series("val/loss") == [(r["step"], r["val_loss"]) for r in read_stream(store, "eval")] and \
        [s for s, _ in series("val/loss")] == [2, 4]
    commits = sorted(read_commits(store).values(), key=lambda c: c["step"])
    assert series("cost/usd")[-1] == (4, commits[-1]["cost_usd"])
    assert [e.wall_time for e in events.Tensors("train/loss")][-1] == pytest.approx(commits[-1]["created"])


def test_node_logs_each_commit_to_mlflow(live_node):
    from mlflow.tracking import MlflowClient  # mlflow-skinny: requirements-dev.txt

    client = MlflowClient(tracking_uri=live_node["mlflow"])
    store = live_node["store"]
    (run,) = client.search_runs([client.get_experiment_by_name("relaytrain").experiment_id])
    assert run.data.tags["relaytrain.store"] == store.url and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(r["step"], r["loss"]) for r in read_stream(store, "train")]
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2  # each step once, though logged 4 times


def test_node_without_a_destination_publishes_nothing(tmp_path, monkeypatch):
    from relaytrain_runtime.report.live import LiveLog

    monkeypatch.delenv("RELAYTRAIN_TENSORBOARD_DIR", raising=False)
    monkeypatch.delenv("RELAYTRAIN_MLFLOW_URI", raising=False)
    assert not LiveLog(str(tmp_path)).enabled
    monkeypatch.setenv("RELAYTRAIN_MLFLOW_URI", "http://127.0.0.1:5000")
    assert LiveLog(str(tmp_path)).enabled


def test_a_failing_tracking_server_never_stops_training(tmp_path, capsys, monkeypatch):
    """Any failure while publishing (here MLflow raising its own exception type) is one warning line."""
    from relaytrain_runtime.report import live

    class TrackingDown(Exception):
        pass

    def down(*args, **kwargs):
        raise TrackingDown("connection refused")

    monkeypatch.delenv("RELAYTRAIN_TENSORBOARD_DIR", raising=False)
    monkeypatch.setattr("relaytrain_runtime.report.view.load_run", lambda store: store)
    monkeypatch.setattr("relaytrain_runtime.report.tracking.log_to_mlflow", down)
    log = live.LiveLog(str(tmp_path), mlflow_uri="http://127.0.0.1:9")
    log.commit({"gen": 3})
    assert capsys.readouterr().err.strip() == \
        "relaytrain: live metrics of gen 3 not published: connection refused"
