"""GCP run monitoring: the runtime's commit log line, and the log-based metrics, dashboard and cost
alert the program builds from it (through the mocked resource graph)."""

import json
import math
import re

import pytest

from relaytrain.gcp.mocks import PROJECT
from relaytrain_runtime.report.logline import commit_log_line

METRIC = "gcp:logging/metric:Metric"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
FIELDS = ("loss", "val_loss", "tokens_per_s", "step_s", "cost_usd")


def of(graph, typ):
    return [r for r in graph if r.type == typ]


SHARD_LOG = "projects/p/logs/run.googleapis.com%2Fstderr"  # where a Cloud Run function's stderr lines go


def payload_matches(filter_: str, payload: dict, log_name: str = SHARD_LOG) -> bool:
    """The subset of the Logging filter language the metrics use: `jsonPayload.F="V"`, `jsonPayload.F:*` and
    `(logName:"S" OR logName:"T")` (substring), joined by AND."""
    for clause in filter_.split(" AND "):
        if m := re.fullmatch(r'\((logName:"[^"]*"(?: OR logName:"[^"]*")*)\)', clause):
            if not any(part in log_name for part in re.findall(r'logName:"([^"]*)"', m[1])):
                return False
        elif m := re.fullmatch(r'jsonPayload\.(\w+)="([^"]*)"', clause):
            if str(payload.get(m[1])) != m[2]:
                return False
        elif m := re.fullmatch(r"jsonPayload\.(\w+):\*", clause):
            if m[1] not in payload:
                return False
        else:
            raise AssertionError(f"unexpected filter clause {clause!r}")
    return True


def extract(expr: str, payload: dict) -> float:
    m = re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", expr)
    assert m, expr
    return payload[m[1]]


COMMIT = {"gen": 3, "leg_id": "ab12cd34", "step": 40, "tokens": 5120, "loss": 3.5, "done": False, "cost_usd": 0.25}
RECORDS = [{"kind": "train", "step": 39, "tokens_per_s": 900.0, "step_s": 0.2},
           {"kind": "train", "step": 40, "tokens_per_s": 1100.0, "step_s": 0.4},
           {"kind": "eval", "step": 40, "val_loss": 3.75, "perplexity": math.exp(3.75)}]


def test_commit_log_line_is_one_structured_json_line():
    line = commit_log_line(COMMIT, RECORDS, run="gcp-tiny-shards")
    assert "\n" not in line
    p = json.loads(line)
    assert p["relaytrain"] == "commit" and p["run"] == "gcp-tiny-shards" and p["worker"] == "ab12cd34"
    assert (p["gen"], p["step"], p["tokens"], p["loss"], p["cost_usd"]) == (3, 40, 5120, 3.5, 0.25)
    assert p["tokens_per_s"] == 1000.0 and p["step_s"] == pytest.approx(0.3) and p["val_loss"] == 3.75
    assert p["severity"] == "INFO" and p["message"] == "relaytrain gcp-tiny-shards: commit gen 3 step 40 loss 3.5000"
    bare = json.loads(commit_log_line({**COMMIT, "loss": float("nan")}, [], run="r", worker="node-0"))
    assert "loss" not in bare and "val_loss" not in bare and "tokens_per_s" not in bare  # never NaN in JSON
    assert bare["worker"] == "node-0" and "loss -" in bare["message"]


@pytest.fixture(scope="module")
def graphs(gcp_graph, gcp_blueprints):
    return {name: gcp_graph(gcp_blueprints[name]) for name in ("gcp-tiny-shards", "gcp-gpu-spot")}


@pytest.mark.parametrize("name", ["gcp-tiny-shards", "gcp-gpu-spot"])
def test_log_based_metrics_read_the_commit_line(graphs, name):
    metrics = {r.inputs["name"]: r.inputs for r in of(graphs[name], METRIC)}
    assert set(metrics) == {f"relaytrain/{name}/{f}" for f in (*FIELDS, "commits")}
    ours = json.loads(commit_log_line(COMMIT, RECORDS, run=name))
    other = json.loads(commit_log_line(COMMIT, RECORDS, run="another-run"))
    for field in FIELDS:
        m = metrics[f"relaytrain/{name}/{field}"]
        assert m["metricDescriptor"]["metricKind"] == "DELTA" and m["metricDescriptor"]["valueType"] == "DISTRIBUTION"
        assert payload_matches(m["filter"], ours) and not payload_matches(m["filter"], other)
        assert extract(m["valueExtractor"], ours) == ours[field]
        buckets = m["bucketOptions"]["exponentialBuckets"]
        top = buckets["scale"] * buckets["growthFactor"] ** buckets["numFiniteBuckets"]
        assert buckets["scale"] <= 1e-3 and top >= 1e6  # seconds, losses, throughput and dollars all resolve
    without_eval = json.loads(commit_log_line(COMMIT, RECORDS[:2], run=name))
    assert not payload_matches(metrics[f"relaytrain/{name}/val_loss"]["filter"], without_eval)
    commits = metrics[f"relaytrain/{name}/commits"]
    assert commits["metricDescriptor"]["valueType"] == "INT64" and "valueExtractor" not in commits
    assert payload_matches(commits["filter"], without_eval)


@pytest.mark.parametrize("name", ["gcp-tiny-shards", "gcp-gpu-spot"])
def test_dashboard_charts_every_metric(graphs, name):
    (dash,) = of(graphs[name], DASHBOARD)
    layout = json.loads(dash.inputs["dashboardJson"])
    assert layout["displayName"] == f"relaytrain {name}"
    charted = [t["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
               for t in layout["mosaicLayout"]["tiles"]]
    metric_names = {r.inputs["name"] for r in of(graphs[name], METRIC)}
    assert sorted(charted) == sorted(f'metric.type="logging.googleapis.com/user/{m}"' for m in metric_names)
    tiles = layout["mosaicLayout"]["tiles"]
    assert all(t["xPos"] + t["width"] <= layout["mosaicLayout"]["columns"] for t in tiles)
    assert len({(t["xPos"], t["yPos"]) for t in tiles}) == len(tiles)  # no two tiles on one spot


def test_cost_alert_follows_the_budget(graphs, gcp_graph, gcp_blueprints):
    (alert,) = of(graphs["gcp-tiny-shards"], ALERT)  # budget_usd: 1.0
    threshold = alert.inputs["conditions"][0]["conditionThreshold"]
    assert threshold["thresholdValue"] == 1.0 and threshold["comparison"] == "COMPARISON_GT"
    assert threshold["filter"] == 'metric.type="logging.googleapis.com/user/relaytrain/gcp-tiny-shards/cost_usd"'
    (channel,) = of(graphs["gcp-tiny-shards"], "gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["type"] == "email" and channel.inputs["labels"] == {"email_address": "ops@example.com"}
    assert alert.inputs["notificationChannels"] == [f"projects/{PROJECT}/notificationChannels/{channel.name}"]
    spot = gcp_blueprints["gcp-gpu-spot"]  # no alerts.email: no channel, the incident is in the console only
    assert of(graphs["gcp-gpu-spot"], "gcp:monitoring/notificationChannel:NotificationChannel") == []
    assert of(graphs["gcp-gpu-spot"], ALERT)[0].inputs.get("notificationChannels", []) == []
    no_budget = gcp_graph(spot.model_copy(update={"budget_usd": None}))
    assert of(no_budget, ALERT) == [] and len(of(no_budget, DASHBOARD)) == 1


def test_gce_nodes_ship_their_commit_lines_as_json_through_the_ops_agent(graphs):
    """The node's startup script configures the Ops Agent to tail the node's log file with a parse_json
    processor; the entries' log name (the receiver id) is one the metrics' filters accept."""
    import yaml

    (instance,) = of(graphs["gcp-gpu-spot"], "gcp:compute/instance:Instance")
    script = instance.inputs["metadataStartupScript"]
    config = yaml.safe_load(re.search(r"<<'OPSAGENT'\n(.*?)\nOPSAGENT\n", script, re.S)[1])
    (pipeline,) = config["logging"]["service"]["pipelines"].values()
    (receiver_id,) = pipeline["receivers"]
    receiver = config["logging"]["receivers"][receiver_id]
    assert receiver["type"] == "files" and len(receiver["include_paths"]) == 1
    assert [config["logging"]["processors"][p]["type"] for p in pipeline["processors"]] == ["parse_json"]
    log_file = receiver["include_paths"][0]
    assert f"exec 2> >(tee -a {log_file} >&2)" in script  # the node's stderr, where the engine prints commit lines
    assert script.index("google-cloud-ops-agent") < script.index("relaytrain_runtime node")
    assert "export RELAYTRAIN_MLFLOW_URI=https://mlflow.example.com" in script  # tracking.mlflow: logged live
    node_log = f"projects/p/logs/{receiver_id}"
    line = json.loads(commit_log_line(COMMIT, RECORDS, run="gcp-gpu-spot", worker="node-0"))
    for metric in of(graphs["gcp-gpu-spot"], METRIC):
        assert payload_matches(metric.inputs["filter"], line, node_log)
        assert not payload_matches(metric.inputs["filter"], line, "projects/p/logs/syslog")


def test_a_failed_ops_agent_install_never_stops_the_boot(tmp_path):
    """The boot script runs under `set -euo pipefail`: an Ops Agent that cannot be installed (no route to its
    repository) is one warning, and the node goes on to train."""
    import subprocess

    from relaytrain.gcp.components import _ops_agent_lines

    for tool, code in (("systemctl", 1), ("curl", 6)):  # not installed; the download fails
        (tmp_path / tool).write_text(f"#!/bin/sh\nexit {code}\n")
        (tmp_path / tool).chmod(0o755)
    install = _ops_agent_lines()[0]
    done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{install}\necho training"], capture_output=True,
                          text=True, cwd=tmp_path, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout == "training\n"
    assert "relaytrain: warning: Ops Agent not installed" in done.stderr
