"""`tracking: {mlflow: URI}` and `alerts: {email: [..]}` in the blueprint: validated, and the tracking URI
used by `relaytrain run --local` (the local node logs each commit live, the stream is logged at the end)
and by `relaytrain report FILE` when `--mlflow` is not given."""

import json

import pytest

from relaytrain.blueprint import BlueprintError, loads
from relaytrain.cli import main
from relaytrain.worker import node_environment
from relaytrain_runtime.contract.metrics import read_stream
from relaytrain_runtime.store import open_store

NODE = ("name: tracked\ncloud: aws\ntopology: gpu-node\n"
        "training: {preset: tiny-gpt, steps: 4, batch_size: 2, seq_len: 16, eval_batches: 1, warmup_steps: 1}\n"
        "gpu: {instance_type: g4dn.xlarge, checkpoint_every_s: 60}\n")


def _problems(text: str, deployed: bool = False) -> list[str]:
    with pytest.raises(BlueprintError) as err:
        loads(text, "bp.yaml", deployed)
    return err.value.problems


def test_tracking_uri_scheme_is_checked_and_file_is_refused_when_deployed(tmp_path):
    (line,) = _problems(NODE + "tracking: {mlflow: 'ftp://host/mlruns'}\n")
    assert line.startswith("bp.yaml:6: tracking.mlflow: 'ftp://host/mlruns' is not an MLflow tracking URI")
    assert "http:, https:" in line
    local = NODE + f"tracking: {{mlflow: '{(tmp_path / 'mlruns').as_uri()}'}}\n"
    assert loads(local).tracking.mlflow.startswith("file:")  # fine for `relaytrain run --local`
    (line,) = _problems(local, deployed=True)
    assert line.startswith("bp.yaml:6: tracking.mlflow: ") and "cannot write" in line and "http(s)://" in line
    (line,) = _problems(NODE + "tracking: {mlflow: mlruns}\n")  # a bare path: this machine's, and ambiguous
    assert "'mlruns' is not an MLflow tracking URI" in line
    assert loads(NODE + "tracking: {mlflow: databricks}\n", deployed=True).tracking.mlflow == "databricks"
    served = loads(NODE + "tracking: {mlflow: 'https://mlflow.example.com'}\n", deployed=True)
    assert node_environment(served) == {"RELAYTRAIN_MLFLOW_URI": "https://mlflow.example.com"}
    assert node_environment(loads(NODE)) == {}


def test_validate_checks_as_deployed_unless_local(tmp_path, capsys):
    path = tmp_path / "bp.yaml"
    path.write_text(NODE + f"tracking: {{mlflow: '{(tmp_path / 'mlruns').as_uri()}'}}\n")
    assert main(["validate", str(path)]) == 2  # what synth and launch would refuse, refused before them
    assert "tracking.mlflow: " in capsys.readouterr().err
    assert main(["validate", str(path), "--local"]) == 0  # fine for `relaytrain run --local`
    assert capsys.readouterr().out.startswith(f"{path}: ok")


def test_alert_emails_are_checked():
    problems = _problems(NODE + "alerts:\n  email: [ops@example.com, not-an-address, ops@example.com]\n")
    assert "bp.yaml:7: alerts.email[1]: 'not-an-address' is not an email address (NAME@DOMAIN.TLD)" in problems
    assert any(p.endswith("alerts.email: lists an address twice") for p in problems)
    assert loads(NODE + "alerts: {email: [ops@example.com]}\n").alerts.email == ["ops@example.com"]


def test_local_run_and_report_log_to_the_blueprints_mlflow(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient  # mlflow-skinny: requirements-dev.txt

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the file store in maintenance mode
    monkeypatch.setenv("RELAYTRAIN_MLFLOW_URI", "")  # `relaytrain run` sets it for its node: restored after the test
    uri = (tmp_path / "mlruns").as_uri()
    path = tmp_path / "bp.yaml"
    path.write_text(NODE + f"tracking: {{mlflow: '{uri}'}}\n")
    store = f"file://{tmp_path}/store"
    assert main(["run", str(path), "--local", "--store", store, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] and summary["mlflow"]["last_step"] == 4
    client = MlflowClient(tracking_uri=uri)
    run_id = summary["mlflow"]["run_id"]
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(r["step"], r["loss"])
                                                          for r in read_stream(open_store(store), "train")]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert main(["report", str(path), "--store", store, "--json"]) == 0  # no --mlflow: the blueprint's
    again = json.loads(capsys.readouterr().out)["mlflow"]
    assert again == {"run_id": run_id, "logged": 0, "last_step": 4}  # the same MLflow run, nothing twice


def test_a_tracked_run_without_mlflow_is_refused_before_it_trains(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow-skinny were not installed
    path = tmp_path / "bp.yaml"
    path.write_text(NODE + f"tracking: {{mlflow: '{(tmp_path / 'mlruns').as_uri()}'}}\n")
    assert main(["run", str(path), "--local", "--store", f"file://{tmp_path}/store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["relaytrain: error: MLflow logging needs mlflow-skinny (pip install mlflow-skinny)"]
    assert not (tmp_path / "store").exists()  # nothing trained, nothing written
