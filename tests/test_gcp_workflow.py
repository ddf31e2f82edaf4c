"""The Cloud Workflows definition: it parses, it has the round shape, and a local interpreter of
the same definition drives rounds to done: first against an in-process fake, then against the
real handler served by functions-framework from the deployed source archive, on fake-gcs-server."""

import json
import subprocess
import sys
import threading
import zipfile

import pytest
import yaml

from relaytrain.gcp import workflow as wf
from relaytrain.gcp.localflow import Interpreter, WorkflowError

URL = "https://shards.example.run.app"
STORE = "gs://bucket/runs/r"


def plan(**kw):
    return wf.RoundPlan(**{"function_url": URL, "store_url": STORE, "shards": 3, "call_timeout_s": 600,
                           "max_rounds": 9, "budget_usd": None, **kw})


def steps(definition):
    return {name: body for step in definition["main"]["steps"] for name, body in step.items()}


def test_definition_round_trips_and_has_the_round_shape():
    d = wf.definition(plan(budget_usd=2.5))
    assert yaml.safe_load(wf.to_yaml(d)) == d
    s = steps(d)
    assert list(s) == ["init", "run_shards", "reduce", "check_reduce", "decide", "next_round"]
    loop = s["run_shards"]["parallel"]["for"]
    assert loop["value"] == "shard" and loop["range"] == [0, 2]
    call = loop["steps"][0]["call_shard"]
    assert call["try"]["args"]["auth"] == {"type": "OIDC"} and call["retry"]["predicate"] == "${retry_transient}"
    assert call["try"]["args"]["body"] == {"op": "shard", "store": "${store}", "round": "${round}",
                                           "shard": "${shard}", "shards": "${shards}"}
    assert s["reduce"]["try"]["args"]["body"]["op"] == "reduce" and s["reduce"]["retry"]["max_retries"] == 5
    assert s["next_round"]["next"] == "run_shards"
    assert ["budget_exhausted"] == [c["return"]["status"] for c in s["decide"]["switch"][1:2]]
    assert "budget_usd" not in json.dumps(wf.definition(plan()))  # no budget, no budget check
    with pytest.raises(ValueError, match="exceeds the Workflows HTTP limit 1800"):
        wf.definition(plan(call_timeout_s=1801))


class FakeShards:
    """An in-process stand-in for the handler: checks each round's order, answers like shard/reduce."""

    def __init__(self, shards=3, done_after=3, cost_per_round=0.4, failures=None):
        self.shards, self.done_after, self.cost_per_round = shards, done_after, cost_per_round
        self.failures = list(failures or [])  # (status, body) answered before real answers
        self.seen: dict[int, set] = {}
        self.reduced: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, url, body, timeout):
        assert url == URL and timeout == 600
        with self.lock:
            if self.failures:
                return self.failures.pop(0)
            r = body["round"]
            if body["op"] == "shard":
                assert r not in self.reduced, "a shard ran after its round was reduced"
                self.seen.setdefault(r, set()).add(body["shard"])
                return 200, {"status": "ok", "round": r, "shard": body["shard"]}
            assert body == {"op": "reduce", "store": body["store"], "round": r, "shards": self.shards}
            assert self.seen[r] == set(range(self.shards)), "reduce before every shard answered"
            self.reduced.append(r)
            return 200, {"done": len(self.reduced) >= self.done_after, "cost_usd": self.cost_per_round * len(self.reduced),
                         "step": len(self.reduced)}


def test_local_driver_runs_rounds_until_done():
    fake = FakeShards()
    result = Interpreter(post=fake).run(wf.definition(plan()))
    assert result["status"] == "done" and result["round"] == 2 and result["result"]["step"] == 3
    assert fake.reduced == [0, 1, 2]


def test_budget_stops_the_loop():
    fake = FakeShards(done_after=100, cost_per_round=0.4)
    result = Interpreter(post=fake).run(wf.definition(plan(budget_usd=1.0)))
    assert result["status"] == "budget_exhausted" and fake.reduced == [0, 1, 2]  # 1.2 >= 1.0 after round 2


def test_args_override_store_round_and_max_rounds():
    fake = FakeShards(done_after=100)
    interp = Interpreter(post=fake)
    with pytest.raises(WorkflowError, match="no done after 2 rounds"):
        interp.run(wf.definition(plan()), {"store": "gs://other/run", "round": 5, "max_rounds": 2})
    assert fake.reduced == [5] and {b["store"] for _, b in interp.calls} == {"gs://other/run"}


def test_transient_errors_are_retried_with_backoff():
    sleeps = []
    fake = FakeShards(shards=1, done_after=1, failures=[(503, "unavailable"), (500, {"error": "boom"}), (429, "")])
    result = Interpreter(post=fake, sleep=sleeps.append).run(wf.definition(plan(shards=1)))
    assert result["status"] == "done" and sleeps == [2, 4, 8]


def test_bad_event_stops_without_retry():
    sleeps = []
    bad = {"error": {"type": "BadEvent", "message": "event field 'store' is required", "op": "shard"}}
    fake = FakeShards(shards=1, failures=[(400, bad)])
    interp = Interpreter(post=fake, sleep=sleeps.append)
    with pytest.raises(WorkflowError) as info:
        interp.run(wf.definition(plan(shards=1)))
    assert info.value.value["code"] == 400 and info.value.value["body"] == bad
    assert sleeps == [] and len(interp.calls) == 1


def test_gives_up_after_max_retries():
    fake = FakeShards(shards=1, failures=[(503, "")] * 6)
    with pytest.raises(WorkflowError, match='"code": 503'):
        Interpreter(post=fake, sleep=lambda s: None).run(wf.definition(plan(shards=1)))


# --- the real handler, from the deployed archive, over HTTP, on fake-gcs-server -------------
def test_deployed_archive_serves_the_handler(tmp_path, gcp_source, gcs_bucket):
    """functions-framework serves `relaytrain_http` from the extracted source archive (main.py +
    the runtime, nothing else on the path), and the handler answers the workflow's events."""
    from tests.fixtures.servers import functions_server

    src = tmp_path / "src"
    with zipfile.ZipFile(gcp_source.path) as zf:
        zf.extractall(src)
    env = {"PYTHONPATH": str(src), "RELAYTRAIN_TIMEOUT_S": "120", "RELAYTRAIN_VCPU": "1", "RELAYTRAIN_MEMORY_GIB": "2"}
    with functions_server("relaytrain_http", src / "main.py", env=env) as url:
        interp = Interpreter()
        with pytest.raises(WorkflowError) as info:  # a store with no bucket is a bad event: 400, no retry
            interp.run(wf.definition(plan(function_url=url, store_url="gs:///nobucket", shards=2)))
        err = info.value.value
        assert err["code"] == 400 and err["body"]["error"]["op"] == "shard"
        assert "gs:///nobucket" in err["body"]["error"]["message"]
        assert len(interp.calls) == 2  # both shards called once, no retries


def test_local_driver_runs_a_tiny_blueprint_to_done(tmp_path, gcp_source, gcs_bucket, gcp_blueprints):
    """The same steps the deployed workflow takes, against the real handler and a GCS emulator."""
    pytest.importorskip("relaytrain_runtime.shards.entry", reason="shard/reduce ops arrive with branch `shards`")
    from tests.fixtures.servers import functions_server

    bp = gcp_blueprints["gcp-tiny-shards"]
    store = f"gs://{gcs_bucket}/runs/{bp.name}"
    t = bp.training
    subprocess.run([sys.executable, "-m", "relaytrain_runtime", "init", "--store", store, "--preset", t.preset,
                    "--steps", str(t.steps), "--batch-size", str(t.batch_size), "--seq-len", str(t.seq_len)],
                   check=True, capture_output=True, text=True)
    src = tmp_path / "src"
    with zipfile.ZipFile(gcp_source.path) as zf:
        zf.extractall(src)
    env = {"PYTHONPATH": str(src), "RELAYTRAIN_TIMEOUT_S": "300", "RELAYTRAIN_VCPU": "1", "RELAYTRAIN_MEMORY_GIB": "2"}
    with functions_server("relaytrain_http", src / "main.py", env=env) as url:
        definition = wf.definition(wf.RoundPlan(
            function_url=url, store_url=store, shards=bp.functions.shards, call_timeout_s=600,
            max_rounds=wf.max_rounds(t.steps, bp.functions.sync, bp.functions.local_steps),
            budget_usd=bp.budget_usd))
        result = Interpreter().run(definition)
    assert result["status"] == "done", result
    assert result["result"]["done"] is True


def test_deployed_definition_from_the_program_drives_rounds(gcp_graph, gcp_blueprints):
    """The YAML the program hands to Cloud Workflows (from the mocked graph) parses and runs."""
    graph = gcp_graph(gcp_blueprints["tiny-gpt-function-shards"])
    source = next(r for r in graph if r.type == "gcp:workflows/workflow:Workflow").inputs["sourceContents"]
    definition = yaml.safe_load(source)
    calls = []

    def post(url, body, timeout):
        calls.append((url, body, timeout))
        if body["op"] == "shard":
            return 200, {"status": "ok"}
        return 200, {"done": body["round"] == 1, "cost_usd": 0.01}

    result = Interpreter(post=post).run(definition)
    assert result["status"] == "done" and result["round"] == 1
    store = "gs://tiny-gpt-function-shards-data-bucket-0000000/runs/tiny-gpt-function-shards"
    assert {(u, t) for u, _, t in calls} == {("https://tiny-gpt-function-shards-shards-mock.a.run.app", 360)}
    assert sorted((b["round"], b["op"], b.get("shard", -1)) for _, b, _ in calls) == [
        (r, op, k) for r in (0, 1) for op, k in [("reduce", -1)] + [("shard", k) for k in range(4)]]
    assert all(b["store"] == store and b["shards"] == 4 for _, b, _ in calls)
