"""The Cloud Workflows definition: it parses, it has the round shape, and a local interpreter of
the same definition drives rounds to done: first against an in-process fake, then against the
real handler served by functions-framework from the deployed source archive, on fake-gcs-server."""

import json
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
    d = wf.definition(plan(budget_usd=2.5, spec={"preset": "tiny-gpt", "steps": 4}, functions={"shards": 3}))
    assert yaml.safe_load(wf.to_yaml(d)) == d
    s = steps(d)
    assert list(s) == ["init", "new_round", "run_shards", "after_shards", "reduce", "take_reduced", "take_skipped",
                       "decide", "advance", "guard", "loop"]
    par = s["run_shards"]["parallel"]
    assert par["shared"] == ["skipped"] and par["for"]["value"] == "shard" and par["for"]["range"] == [0, 2]
    call = par["for"]["steps"][0]["call_shard"]
    assert call["try"]["args"]["auth"] == {"type": "OIDC"} and call["retry"]["predicate"] == "${retry_transient}"
    assert call["try"]["args"]["body"] == {"op": "shard", "store": "${store}", "round": "${round}", "shard": "${shard}",
                                           "shards": "${shards}", "spec": "${spec}", "functions": "${functions}"}
    assert s["reduce"]["try"]["args"]["body"] == {"op": "reduce", "store": "${store}", "round": "${round}"}
    assert s["reduce"]["retry"]["max_retries"] == 5 and s["loop"]["next"] == "new_round"
    assert [c["return"]["status"] for c in s["decide"]["switch"]] == ["done", "budget_exhausted"]
    assert "budget_usd" not in json.dumps(wf.definition(plan()))  # no budget, no budget check
    assert "spec" not in json.dumps(s["init"]) or "spec" in json.dumps(d)
    with pytest.raises(ValueError, match="exceeds the Workflows HTTP limit 1800"):
        wf.definition(plan(call_timeout_s=1801))


class FakeShards:
    """An in-process stand-in for the handler that follows the shards protocol: checks each round's
    order and answers like shard_op / reduce_op (ok | stale | done; committed | missing)."""

    def __init__(self, shards=3, done_after=3, cost_per_round=0.4, failures=None, start_round=0, lose=()):
        self.shards, self.done_after, self.cost_per_round = shards, done_after, cost_per_round
        self.failures = list(failures or [])  # (status, body) answered before real answers
        self.current = start_round  # the run's current round, as the store knows it
        self.lose = set(lose)  # rounds whose first reduce finds a shard object missing
        self.seen: dict[int, set] = {}
        self.reduced: list[int] = []
        self.lock = threading.Lock()

    def position(self):
        return {"current_round": self.current, "done": len(self.reduced) >= self.done_after}

    def __call__(self, url, body, timeout):
        assert url == URL and timeout == 600
        with self.lock:
            if self.failures:
                return self.failures.pop(0)
            r = body["round"]
            if body["op"] == "shard":
                assert body["shards"] == self.shards
                if self.position()["done"] or r != self.current:
                    return 200, {
                        "status": "done" if self.position()["done"] else "stale",
                        "round": r,
                        **self.position(),
                    }
                self.seen.setdefault(r, set()).add(body["shard"])
                return 200, {"status": "ok", "round": r, "shard": body["shard"]}
            assert set(body) == {"op", "store", "round"}
            assert self.seen.get(r) == set(range(self.shards)), "reduce before every shard answered"
            if r in self.lose:
                self.lose.discard(r)
                self.seen[r].clear()
                return 200, {"status": "missing", "round": r, "piece": 0, "missing": [1]}
            self.reduced.append(r)
            self.current = r + 1
            return 200, {"status": "committed", "round": r, "next_round": r + 1, "step": len(self.reduced),
                         "cost_usd": self.cost_per_round * len(self.reduced), **self.position()}


def test_local_driver_runs_rounds_until_done():
    fake = FakeShards()
    result = Interpreter(post=fake).run(wf.definition(plan()))
    assert result["status"] == "done" and result["round"] == 2 and result["result"]["step"] == 3
    assert fake.reduced == [0, 1, 2]


def test_resumes_at_the_runs_current_round():
    """A new execution starting at round 0 on a run already at round 5 is told `stale` and jumps."""
    fake = FakeShards(start_round=5, done_after=2)
    interp = Interpreter(post=fake)
    result = interp.run(wf.definition(plan()))
    assert result["status"] == "done" and fake.reduced == [5, 6]
    assert not [b for _, b in interp.calls if b["op"] == "reduce" and b["round"] == 0]  # no reduce of a stale round


def test_missing_shard_object_reruns_the_round():
    fake = FakeShards(done_after=2, lose={1})
    interp = Interpreter(post=fake)
    assert interp.run(wf.definition(plan()))["status"] == "done"
    assert fake.reduced == [0, 1]
    assert sum(1 for _, b in interp.calls if b["op"] == "shard" and b["round"] == 1) == 6  # round 1 ran twice


def test_budget_stops_the_loop():
    fake = FakeShards(done_after=100, cost_per_round=0.4)
    result = Interpreter(post=fake).run(wf.definition(plan(budget_usd=1.0)))
    assert result["status"] == "budget_exhausted" and fake.reduced == [0, 1, 2]  # 1.2 >= 1.0 after round 2


def test_args_override_store_round_and_max_rounds():
    fake = FakeShards(done_after=100, start_round=5)
    interp = Interpreter(post=fake)
    with pytest.raises(WorkflowError, match="no done after 2 rounds"):
        interp.run(wf.definition(plan()), {"store": "gs://other/run", "round": 5, "max_rounds": 2})
    assert fake.reduced == [5, 6] and {b["store"] for _, b in interp.calls} == {"gs://other/run"}


def test_transient_errors_are_retried_with_backoff():
    sleeps = []
    fake = FakeShards(shards=1, done_after=1, failures=[(503, "unavailable"), (500, {"error": "boom"}), (429, "")])
    result = Interpreter(post=fake, sleep=sleeps.append).run(wf.definition(plan(shards=1)))
    assert result["status"] == "done" and sleeps == [2, 4, 8]


def test_network_errors_are_retried_against_a_real_socket():
    """A refused connection (nothing listening yet) and a timeout are retried like Workflows does."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connecting is refused
    sleeps, attempts = [], []
    interp = Interpreter(sleep=sleeps.append)
    real_post = interp.post

    def post(url, body, timeout):
        attempts.append(url)
        if len(attempts) == 1:
            return real_post(url, body, timeout)  # refused: ConnectionFailedError
        if len(attempts) == 2:
            raise TimeoutError("timed out")
        return 200, {"status": "committed", "done": True} if body["op"] == "reduce" else {"status": "ok"}

    interp.post = post
    result = interp.run(wf.definition(plan(function_url=f"http://127.0.0.1:{port}/", shards=1)))
    assert result["status"] == "done" and sleeps == [2, 4] and len(attempts) == 4


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
    """The steps the deployed workflow takes, against the real handler (served from the source
    archive) and a GCS emulator: the run initialises itself from the first shard events and trains
    to done; a second execution of the same workflow finds the run done at once."""
    from relaytrain.worker import functions_payload, spec_payload
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.store import open_store
    from tests.fixtures.servers import functions_server

    bp = gcp_blueprints["gcp-tiny-shards"]
    store = f"gs://{gcs_bucket}/runs/{bp.name}"
    src = tmp_path / "src"
    with zipfile.ZipFile(gcp_source.path) as zf:
        zf.extractall(src)
    env = {"PYTHONPATH": str(src), "RELAYTRAIN_TIMEOUT_S": "300", "RELAYTRAIN_VCPU": "1", "RELAYTRAIN_MEMORY_GIB": "2"}
    with functions_server("relaytrain_http", src / "main.py", env=env) as url:
        definition = wf.definition(wf.RoundPlan(
            function_url=url, store_url=store, shards=bp.functions.shards, call_timeout_s=600,
            max_rounds=wf.max_rounds(bp.training.steps, bp.functions.sync, bp.functions.local_steps),
            budget_usd=bp.budget_usd, spec=spec_payload(bp), functions=functions_payload(bp)))
        interp = Interpreter()
        result = interp.run(definition)
        again = Interpreter().run(definition)
    assert result["status"] == "done", result
    body = result["result"]
    assert body["status"] == "committed" and body["done"] is True and body["step"] == bp.training.steps
    assert 0 < body["cost_usd"] < bp.budget_usd  # the handler priced its seconds from RELAYTRAIN_VCPU/MEMORY_GIB
    rounds = sorted({b["round"] for _, b in interp.calls if b["op"] == "reduce"})
    assert rounds == list(range(bp.training.steps))  # gradients sync: one optimizer step per round
    latest = Baton(open_store(store)).latest()
    assert latest["step"] == bp.training.steps and latest["done"] is True
    assert again["status"] == "done" and again["result"]["status"] == "done"
