"""Refusal: an input that cannot be served is answered with one structured error (or one clear line),
never a traceback, and never persisted. Events, handler settings, CLI time limits and store records."""

import copy
import json
import math
import time
from types import SimpleNamespace

import pytest

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.records import (
    CommitManifest,
    EvalRecord,
    RecordError,
    TrainingMeta,
    WorkerStatus,
)
from relaytrain_runtime.handlers import aws_lambda, gcf, ops

NAN, INF = float("nan"), float("inf")


def _bad(result: dict, *fragments: str) -> None:
    assert set(result) == {"error"}, result
    assert result["error"]["type"] == "BadEvent", result
    for fragment in fragments:
        assert fragment in result["error"]["message"], (fragment, result)


@pytest.mark.parametrize("event,fragments", [
    ({"op": "leg", "spec": {"preset": "tiny-gpt", "steps": "5"}}, ["'spec.steps' must be int", "str '5'"]),
    ({"op": "leg", "spec": {"preset": ["tiny-gpt"], "steps": 5}}, ["'spec.preset' must be str", "list"]),
    ({"op": "leg", "spec": {"preset": "tiny-gpt", "steps": True}}, ["'spec.steps' must be int", "bool"]),
    ({"op": "leg", "spec": {"preset": "tiny-gpt", "lr": NAN}}, ["'spec.lr' must be a finite number"]),
    ({"op": "leg", "max_steps": True}, ["'max_steps' must be int", "bool"]),
    ({"op": "leg", "spec": "tiny-gpt"}, ["'spec' must be dict"]),
    ({"op": "status", "functions": {"shards": "2"}}, ["'functions.shards' must be int"]),
    ({"op": "shard", "round": "0", "shard": 0}, ["'round' must be int"]),
    ({"op": "shard", "round": True, "shard": 0}, ["'round' must be int", "bool"]),
    ({"op": "shard", "round": 0, "shard": 0, "cost_per_second": NAN}, []),  # the handler's price wins: fine
    ({"op": "reduce", "round": 0, "pieces": [0, "1"]}, ["'pieces[1]' must be int"]),
    ({"op": "reduce", "round": 0, "commit": "yes"}, ["'commit' must be bool"]),
    ({"op": "evaluate", "gen": 1.5}, ["'gen' must be int"]),
    ({"op": "preprocess", "phase": "plan", "source": "file:///x", "vocab_size": "big"}, ["'vocab_size' must be int"]),
])
def test_wrong_types_are_structured_errors(tmp_path, event, fragments):
    """Wrong types never raise out of the handler (they would enter the retry loop) and write nothing."""
    store = tmp_path / "run"
    result = ops.run_op({**event, "store": f"file://{store}"}, time.time() + 60)
    if not fragments:  # the event's own cost is overridden by the handler's; the op then fails on the empty store
        assert "error" in result and "cost_per_second" not in result["error"]["message"], result
        return
    _bad(result, *fragments)
    assert not store.exists() or not any(store.rglob("*.json"))


@pytest.mark.parametrize("deadline", [NAN, INF, -INF])
def test_non_finite_deadline_is_refused(deadline):
    _bad(ops.run_op({"store": "file:///tmp/x"}, deadline), "deadline must be a finite time")


@pytest.mark.parametrize("cost", [NAN, INF, -0.5])
def test_non_finite_or_negative_price_is_refused(cost):
    _bad(ops.run_op({"store": "file:///tmp/x"}, time.time() + 60, cost), "the handler's price 'cost_per_second'")


@pytest.mark.parametrize("name,value", [("RELAYTRAIN_TIMEOUT_S", "nan"), ("RELAYTRAIN_TIMEOUT_S", "inf"),
                                        ("RELAYTRAIN_MARGIN_S", "-1"), ("RELAYTRAIN_MEMORY_GIB", "-2"),
                                        ("RELAYTRAIN_VCPU", "nan")])
def test_gcf_settings_name_the_variable_the_deployment_set(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    result, status = gcf.handle({"store": "file:///tmp/x"}, time.time())
    assert status == 500
    assert result["error"]["message"].startswith(f"environment variable {name}={value!r} must be a finite number")


def _context(memory_mb, remaining_ms=60_000):
    return SimpleNamespace(memory_limit_in_mb=memory_mb, get_remaining_time_in_millis=lambda: remaining_ms)


def test_lambda_negative_memory_is_reported_as_memory(monkeypatch):
    result = aws_lambda.handler({"store": "file:///tmp/x"}, _context(-128))
    assert "memory size (MemorySize) must be > 0 MB, got -128" in result["error"]["message"]
    assert "cost_per_second" not in result["error"]["message"]
    monkeypatch.setenv("RELAYTRAIN_MARGIN_S", "nan")
    result = aws_lambda.handler({"store": "file:///tmp/x"}, _context(1024))
    assert "RELAYTRAIN_MARGIN_S='nan' must be a finite number" in result["error"]["message"]


@pytest.mark.parametrize("max_seconds", [NAN, INF, 0.0])
def test_leg_time_box_must_be_finite(max_seconds):
    from relaytrain_runtime.leg import deadline_from

    with pytest.raises(RelayError, match="--max-seconds must be > 0"):
        deadline_from(max_seconds)


def test_relay_refuses_non_finite_leg_seconds(tmp_path):
    from relaytrain_runtime.relay import relay

    with pytest.raises(RelayError, match="--leg-seconds must be > 0"):
        relay(f"file://{tmp_path}/run", leg_seconds=NAN)
    with pytest.raises(RelayError, match="--cost-per-second must be a finite number"):
        relay(f"file://{tmp_path}/run", cost_per_second=INF)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ records

SHA = "ab" * 32


def _manifest(**overrides) -> dict:
    objects = {name: {"key": f"ckpt/00000002-leg/{name}.bin", "size": 10, "sha256": SHA}
               for name in ("weights", "optimizer", "state")}
    return {"gen": 2, "parent": 1, "leg_id": "leg", "created": 1.0, "objects": objects, "weights_sha256": SHA,
            "step": 4, "tokens": 512, "loss": 3.5, "done": False, "cost_usd": 0.0, "rng": {}, "spec_digest": "d",
            "data": {"next_step": 4}, "save_seconds": 0.1, **overrides}


def test_manifest_round_trips():
    data = _manifest()
    assert CommitManifest.from_dict(data).to_dict() == data
    evaluated = {**data, "val_loss": 3.0, "perplexity": math.exp(3.0)}
    assert CommitManifest.from_dict(evaluated).to_dict() == evaluated


def _broken(path: str, value):
    data = _manifest()
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path,value,message", [
    ("step", KeyError, "field 'step' is missing"),
    ("objects", KeyError, "field 'objects' is missing"),
    ("step", "4", "field 'step' must be int, got str"),
    ("done", 1, "field 'done' must be bool"),
    ("gen", True, "field 'gen' must be int, got bool"),
    ("gen", 0, "field 'gen' must be >= 1"),
    ("parent", 2, "parent 2 must be below gen 2"),
    ("cost_usd", NAN, "field 'cost_usd' must be finite"),
    ("objects.state", KeyError, "objects lack state"),
    ("objects.weights.key", "../../etc/passwd", "is outside the run's ckpt/ objects"),
    ("objects.weights.key", "spec.json", "is outside the run's ckpt/ objects"),
    ("objects.weights.key", "ckpt/00000002-leg/../../x", "is outside the run's ckpt/ objects"),
    ("objects.weights", "ckpt/x", "objects.weights: must be a JSON object, got str"),
    ("objects.weights.size", -1, "field 'size' must be >= 0"),
    ("objects.weights.sha256", "zz", "sha256 must be 64 lowercase hex digits"),
    ("weights_sha256", "cd" * 32, "weights_sha256 differs from objects.weights.sha256"),
])
def test_malformed_manifest_raises_one_typed_error(path, value, message):
    with pytest.raises(RecordError, match=message.replace("(", r"\(")):
        CommitManifest.from_dict(_broken(path, value), "baton/00000002.json")


def test_non_object_records_are_record_errors():
    for record in (CommitManifest, TrainingMeta, WorkerStatus, EvalRecord):
        with pytest.raises(RecordError, match="must be a JSON object, got list"):
            record.from_dict([1, 2])


def test_records_of_a_real_leg_validate(tiny_run):
    """What a leg really writes (manifest, checkpoint state, status, evaluation) reads back through its record."""
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.contract.keys import commit_key
    from relaytrain_runtime.contract.records import read_eval
    from relaytrain_runtime.leg import run_leg
    from relaytrain_runtime.store import open_store

    url = tiny_run(steps=2)
    status = run_leg(url)
    store = open_store(url)
    manifest = json.loads(store.read(commit_key(status["gen"])))
    assert CommitManifest.from_dict(manifest).to_dict() == manifest
    baton = Baton(store)
    state = baton.read_state(baton.latest())
    assert TrainingMeta.from_dict(state).to_dict() == state and "metrics" not in state
    assert WorkerStatus.from_dict(copy.deepcopy(status)).to_dict() == status
    assert [json.loads(store.read(k)) for k in store.list("legs/")] == [json.loads(json.dumps(status))]
    record = read_eval(store, status["gen"])
    assert record.loss == status["val_loss"] and math.isclose(record.perplexity, math.exp(record.loss))
    assert record.weights_sha256 == status["weights_sha256"] and record.batches == 2


def test_a_spec_that_cannot_fit_the_functions_memory_is_refused_before_it_is_persisted(tmp_path):
    """A handler initialising a run from its event's spec applies the memory-fit check blueprint validation
    uses: gpt2-small at micro-batch 8 x 1024 in a 512 MB Lambda is refused with the numbers, nothing written;
    at micro-batch 2 over 8 function shards of 16 GiB it passes."""
    import time

    from relaytrain_runtime.handlers.ops import _refuse_what_cannot_fit, run_op
    from relaytrain_runtime.memory import GIB

    spec = {"preset": "gpt2-small", "steps": 10, "batch_size": 8, "seq_len": 1024}
    store = tmp_path / "run"
    out = run_op({"op": "leg", "store": f"file://{store}", "spec": spec}, time.time() + 60, 0.0,
                 memory_bytes=512 * 2**20)
    assert out["error"]["type"] == "RelayError" and "training needs" in out["error"]["message"]
    assert "0.5 GiB" in out["error"]["message"] and "micro_batch_size" in out["error"]["message"]
    assert not store.exists()  # refused before anything was persisted
    fits = {"spec": {**spec, "batch_size": 64, "micro_batch_size": 2}, "functions": {"shards": 8}}
    _refuse_what_cannot_fit(fits, 16 * GIB)
