"""`relaytrain status` and `relaytrain report` on a run's store, and the CLI polish (--version, help,
BrokenPipe, AWS-only verbs on GCP blueprints, --json).

The run is real (two legs commit through the runtime); its metrics stream is written here with
`write_records`, including objects the reader must ignore: a lost race's and an in-flight leg's.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from relaytrain_runtime.contract.keys import MANIFEST_KEY, commit_key
from relaytrain_runtime.contract.metrics import write_records
from relaytrain_runtime.store import open_store

ROOT = pathlib.Path(__file__).resolve().parents[2]
GCP_NODE = ROOT / "blueprints" / "tiny-gpt-gce-gpu.yaml"
AWS_STEPS = ROOT / "blueprints" / "tiny-gpt-lambda-steps.yaml"
TOKENS_PER_STEP = 4 * 32  # TINY_SPEC: batch 4 x seq 32


def relaytrain(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relaytrain", *args], capture_output=True, text=True, **kwargs)


def _train(step: int, loss: float) -> dict:
    return {"kind": "train", "step": step, "loss": loss, "lr": 1e-3, "grad_norm": 0.5 + step, "tokens": step * 128,
            "tokens_per_s": 1000.0 + step, "step_s": 0.2, "data_s": 0.05, "compute_s": 0.15, "comm_s": 0.0}


@pytest.fixture(scope="module")
def watched(tmp_path_factory, stdlib_dataset):
    """A 12-step tiny run stopped at step 8 after two real legs, with its metrics stream."""
    import shutil

    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.leg import run_leg
    from relaytrain_runtime.spec import RunSpec
    from tests.fixtures.runs import TINY_SPEC

    root = tmp_path_factory.mktemp("watched")
    shutil.copytree(stdlib_dataset / "data", root / "data")
    store = open_store(str(root))
    Baton(store).init(RunSpec(**TINY_SPEC))
    legs = [run_leg(store.url, max_steps=4, cost_per_second=0.01) for _ in range(2)]
    manifests = [json.loads(store.read(commit_key(leg["gen"]))) for leg in legs]
    (first, second) = manifests
    write_records(store, first["gen"], first["leg_id"], [_train(s, 10.0 - s) for s in range(1, 5)]
                  + [{"kind": "eval", "step": 4, "val_loss": 7.5, "perplexity": math.exp(7.5)}])
    write_records(store, second["gen"], "lostrace", [_train(s, 99.0) for s in range(5, 9)])  # lost the race
    write_records(store, second["gen"], second["leg_id"], [_train(s, 10.0 - s) for s in range(5, 9)]
                  + [{"kind": "eval", "step": 8, "val_loss": 6.25, "perplexity": math.exp(6.25)}])
    write_records(store, second["gen"] + 1, "inflight", [_train(9, 55.0)])  # no manifest yet
    return {"url": store.url, "store": store, "manifests": manifests}


def test_status_json_of_a_local_store(watched):
    out = relaytrain("status", "--store", watched["url"], "--budget", "0.001", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    newest = watched["manifests"][-1]
    assert (s["step"], s["steps"], s["done"], s["tokens"]) == (8, 12, False, 8 * TOKENS_PER_STEP)
    assert s["loss"] == newest["loss"] and s["cost_usd"] == pytest.approx(newest["cost_usd"], abs=1e-6)
    assert (s["val_loss"], s["val_step"]) == (6.25, 8) and s["perplexity"] == pytest.approx(math.exp(6.25))
    assert s["grad_norm"] == 8.5  # the lineage's step 8, not the lost race's or the in-flight leg's
    manifest = json.loads(watched["store"].read(MANIFEST_KEY))
    train_tokens = sum(shard["tokens"] for shard in manifest["splits"]["train"])
    assert s["epoch"] == pytest.approx(8 * TOKENS_PER_STEP / train_tokens, abs=1e-4)
    # wall-clock rate between the two commits; ETA and projection follow from it
    first, second = watched["manifests"]
    rate = (second["tokens"] - first["tokens"]) / (second["created"] - first["created"])
    assert s["rate_source"] == "commits" and s["tokens_per_s"] == pytest.approx(rate, rel=1e-3)
    assert s["eta_s"] == pytest.approx(4 * TOKENS_PER_STEP / rate, abs=0.051)  # shown to 0.1 s
    assert s["projected_cost_usd"] == pytest.approx(newest["cost_usd"] * 12 / 8, rel=1e-4)
    assert s["budget_usd"] == 0.001 and s["over_budget"] is (s["projected_cost_usd"] > 0.001)
    assert s["legs"] == 2 and s["latest_checkpoint"]["manifest"] == commit_key(newest["gen"])


def test_status_text_and_bounded_watch(watched):
    text = relaytrain("status", "--store", watched["url"])
    assert text.returncode == 0, text.stderr
    assert "step     8/12 (66.7 %)" in text.stdout and "val loss 6.2500 (step 8" in text.stdout
    assert "ETA " in text.stdout and "projected" in text.stdout
    watch = relaytrain("status", "--store", watched["url"], "--watch", "--iterations", "3", "--interval", "0.01")
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout.count("step     8/12") == 3  # not a TTY: one block per refresh, no escape codes
    assert "\x1b[" not in watch.stdout
    lines = relaytrain("status", "--store", watched["url"], "--watch", "--iterations", "2", "--interval", "0.01",
                       "--json").stdout.splitlines()
    assert [json.loads(line)["step"] for line in lines] == [8, 8]


def test_watch_on_a_terminal_redraws_in_place(watched):
    import pty

    main, child = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "status", "--store", watched["url"], "--watch",
                           "--iterations", "2", "--interval", "0.01"], stdout=child, stderr=subprocess.PIPE)
    os.close(child)
    shown = b""
    while chunk := _read(main):
        shown += chunk
    os.close(main)
    assert proc.returncode == 0, proc.stderr
    assert shown.count(b"\x1b[H\x1b[J") == 2 and shown.count(b"step     8/12") == 2


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other side is closed: all read
        return b""


def test_report_plots_summary_and_tensorboard(watched, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    out = relaytrain("report", "--store", watched["url"], "--out", str(tmp_path / "r"),
                     "--tensorboard", str(tmp_path / "tb"), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["best_val_loss"], summary["best_val_step"], summary["evaluations"]) == (6.25, 8, 2)
    assert summary["stream_records"] == 8 and summary["median_tokens_per_s"] == pytest.approx(1004.5)
    assert summary["time_split"] == {"data_s": 0.25, "compute_s": 0.75, "comm_s": 0.0}
    for name in ("loss.png", "throughput.png", "cost.png"):
        assert (tmp_path / "r" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["best_val_loss"] == 6.25
    assert "| val loss (best)" in (tmp_path / "r" / "summary.md").read_text()

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    def series(tag):
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
    assert series("train/loss") == [(s, 10.0 - s) for s in range(1, 9)]  # lineage only, each step once
    assert series("val/loss") == [(4, 7.5), (8, 6.25)]
    assert [s for s, _ in series("cost/usd")] == [4, 8]
    assert {"train/tokens_per_s", "train/grad_norm", "time/data_s", "time/comm_s"} <= set(events.Tags()["tensors"])
    # a second report replaces its event file instead of adding duplicates
    assert relaytrain("report", "--store", watched["url"], "--tensorboard", str(tmp_path / "tb")).returncode == 0
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["events.out.tfevents.relaytrain"]


@pytest.mark.parametrize("scheme, bucket_fixture", [("s3", "s3_bucket"), ("gs", "gcs_bucket")])
def test_status_and_report_read_bucket_stores(watched, scheme, bucket_fixture, request, tmp_path):
    """The same run's JSON objects in an S3 (moto) or GCS (fake-gcs-server) bucket read the same."""
    url = f"{scheme}://{request.getfixturevalue(bucket_fixture)}/runs/watched"
    bucket = open_store(url)
    for key in watched["store"].list(""):
        if not key.startswith(("ckpt/", "data/parts/")):  # status and report read JSON only
            bucket.write(key, watched["store"].read(key))
    local = json.loads(relaytrain("status", "--store", watched["url"], "--json").stdout)
    remote = relaytrain("status", "--store", url, "--json")
    assert remote.returncode == 0, remote.stderr
    assert {**json.loads(remote.stdout), "store": None} == {**local, "store": None}
    report = relaytrain("report", "--store", url, "--out", str(tmp_path), "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["best_val_loss"] == 6.25 and (tmp_path / "cost.png").is_file()


def test_status_and_report_never_import_torch(watched):
    code = ("import sys, contextlib, io; from relaytrain.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['status', '--store', {watched['url']!r}]) == 0\n"
            f"    assert main(['report', '--store', {watched['url']!r}]) == 0\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_no_run_and_bad_arguments_are_one_line(tmp_path):
    for args in (["status", "--store", str(tmp_path)], ["report", "--store", str(tmp_path)],
                 ["status"], ["status", "--store", str(tmp_path), "--watch", "--iterations", "0"]):
        out = relaytrain(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    assert "no run at" in relaytrain("status", "--store", str(tmp_path)).stderr


@pytest.mark.parametrize("verb", ["launch", "status", "report"])
def test_aws_verbs_on_a_gcp_blueprint_point_at_the_gcp_way(verb):
    out = relaytrain(verb, str(GCP_NODE), env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert f"relaytrain {verb} works on deployed AWS stacks only" in out.stderr
    way = "status" if verb == "launch" else verb
    assert "pulumi up" in out.stderr and f"relaytrain {way} --store $(pulumi stack output store_url)" in out.stderr
    assert ("start it with" in out.stderr) == (verb == "launch")


def test_version_and_help_name_the_kit():
    from relaytrain import __version__

    version = relaytrain("--version")
    assert version.returncode == 0 and version.stdout.startswith(f"relaytrain {__version__} ")
    helped = relaytrain("--help")
    assert helped.returncode == 0 and "infrastructure-as-code blueprints" in helped.stdout
    assert "training runtime\n" not in helped.stdout.split("positional arguments")[0]
    assert "report" in helped.stdout and "status" in helped.stdout


def test_a_closed_pipe_ends_quietly():
    """`relaytrain plan --json | head`: stdout's reader is gone before the first write."""
    code = ("import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
            "from relaytrain.cli import main\n"
            f"sys.exit(main(['plan', '--json', {str(AWS_STEPS)!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 141 and out.stderr == "", out.stderr


def test_validate_and_synth_print_json(tmp_path):
    valid = relaytrain("validate", str(AWS_STEPS), "--json")
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout) == {"valid": [{"file": str(AWS_STEPS), "name": "tiny-gpt-lambda-steps",
                                                   "topology": "lambda-steps", "cloud": "aws",
                                                   "region": "us-east-1", "warnings": []}], "problems": []}
    synth = relaytrain("synth", str(GCP_NODE), "--out", str(tmp_path), "--json")
    assert synth.returncode == 0, synth.stderr
    written = json.loads(synth.stdout)
    assert (written["aws"], written["gcp"]) == (0, 1) and all(pathlib.Path(p).is_file() for p in written["written"])


def test_report_logs_the_stream_to_a_file_mlflow_store(watched, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient  # mlflow-skinny: requirements-dev.txt

    uri = (tmp_path / "mlruns").as_uri()
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}  # mlflow 3 keeps the file store in maintenance mode
    first = relaytrain("report", "--store", watched["url"], "--mlflow", uri, "--json", env=env)
    assert first.returncode == 0, first.stderr
    logged = json.loads(first.stdout)["mlflow"]
    assert logged["last_step"] == 8
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(logged["run_id"], "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 10.0 - s) for s in range(1, 9)]
    assert [m.value for m in client.get_metric_history(logged["run_id"], "val/loss")] == [7.5, 6.25]
    run = client.get_run(logged["run_id"])
    assert run.data.params["steps"] == "12" and run.data.tags["relaytrain.store"] == watched["url"]
    again = json.loads(relaytrain("report", "--store", watched["url"], "--mlflow", uri, "--json", env=env).stdout)
    assert again["mlflow"] == {"run_id": logged["run_id"], "logged": 0, "last_step": 8}  # same run, nothing twice
    assert len(client.get_metric_history(logged["run_id"], "train/loss")) == 8
