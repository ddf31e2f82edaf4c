"""FSDP2 on CPU (gloo): world 2 against DDP, its DCP checkpoint in the baton resumed at world 1 and at world 4;
a leg's plain checkpoint continuing under FSDP; a sharded save that loses the race leaves nothing; torch.compile's
cache on the node's disk.

Tiny GPT, 6 steps of a global batch of 8 in micro-batches of 2. Every run starts from the same seed and
trains the same global batches; ranks are processes started with torch.multiprocessing.spawn.
"""

import os
import shutil

import pytest
import torch

from relaytrain_runtime.baton import SHARDED_FORMAT, Baton
from relaytrain_runtime.store import open_store
from tests.fixtures.shards import rel_diff

STEPS, CUT = 6, 3
SPEC = dict(steps=STEPS, batch_size=8, micro_batch_size=2, seq_len=32)
TOLERANCE = 1e-5  # ||w - w_ddp|| / ||w_ddp||: the DDP-vs-one-process bound of test_cloud_node, float rounding only


def _worker(rank: int, world: int, url: str, init_file: str, steps: int, out: str) -> None:
    import pathlib

    import torch.distributed as dist

    from relaytrain_runtime import determinism, distributed
    from relaytrain_runtime.data import batch, open_dataset
    from relaytrain_runtime.model import build_model
    from relaytrain_runtime.train import apply_update, forward_backward, make_optimizer

    determinism.configure(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        baton = Baton(open_store(url))
        spec = baton.spec()
        device = torch.device("cpu")
        model = distributed.wrap_model(build_model(spec.model, seed=spec.seed), spec.parallelism, device, world)
        optimizer = make_optimizer(distributed.unwrap(model), spec)
        commit, state = baton.resume()
        step = 0
        staging = pathlib.Path(out).parent / f"staging-{rank}"
        if state is not None:
            distributed.load_state(model, optimizer, spec, baton, state, staging)
            step = state["meta"]["step"]
        dataset = open_dataset(baton.store, spec)
        for s in range(step, steps):
            forward_backward(model, spec, batch(spec, s, rank, world, dataset))
            apply_update(model, optimizer, spec, s)
        meta = {"step": steps, "tokens": 0, "loss": 0.0, "done": steps >= spec.steps, "cost_usd": 0.0}
        if distributed.is_sharded(model):
            distributed.save_sharded(baton, commit["gen"] if commit else 0, model, optimizer, meta, "fsdp", staging)
        weights = distributed.full_weights(model)
        if rank == 0:
            torch.save(weights, out)
    finally:
        dist.destroy_process_group()


def _train(tmp_path, url: str, world: int, steps: int, name: str) -> dict:
    out = tmp_path / f"{name}.pt"
    torch.multiprocessing.spawn(_worker, args=(world, url, str(tmp_path / f"{name}.init"), steps, str(out)),
                                nprocs=world, join=True)
    return torch.load(out)


def _train_one_process(url: str, steps: int, tmp_path) -> dict:
    """World 1 without a process group: a plain model (a leg, one GPU) resuming the sharded checkpoint."""
    from relaytrain_runtime import distributed
    from relaytrain_runtime.data import batch, open_dataset
    from relaytrain_runtime.model import build_model
    from relaytrain_runtime.train import apply_update, forward_backward, make_optimizer

    baton = Baton(open_store(url))
    spec = baton.spec()
    model = build_model(spec.model, seed=spec.seed)
    optimizer = make_optimizer(model, spec)
    _, state = baton.resume()
    distributed.load_state(model, optimizer, spec, baton, state, tmp_path / "staging-1")
    dataset = open_dataset(baton.store, spec)
    for s in range(state["meta"]["step"], steps):
        forward_backward(model, spec, batch(spec, s, 0, 1, dataset))
        apply_update(model, optimizer, spec, s)
    return distributed.full_weights(model)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, stdlib_dataset):
    """DDP world 2 for all steps; FSDP world 2 cut at step CUT (a DCP commit) and continued to the end."""
    from relaytrain_runtime.spec import RunSpec
    from tests.fixtures.runs import TINY_SPEC

    root = tmp_path_factory.mktemp("fsdp")

    def store(name: str, **extra) -> str:
        shutil.copytree(stdlib_dataset / "data", root / name / "data")
        Baton(open_store(str(root / name))).init(RunSpec(**{**TINY_SPEC, **SPEC, **extra}))
        return str(root / name)

    ddp = _train(root, store("ddp"), 2, STEPS, "ddp")
    fsdp_url = store("fsdp", parallelism="fsdp")
    _train(root, fsdp_url, 2, CUT, "fsdp-cut")
    shutil.copytree(root / "fsdp", root / "fsdp-at-cut")
    fsdp = _train(root, fsdp_url, 2, STEPS, "fsdp")
    return {"root": root, "ddp": ddp, "fsdp": fsdp, "cut_url": str(root / "fsdp-at-cut"), "fsdp_url": fsdp_url}


def test_fsdp_world_2_matches_ddp_and_commits_dcp_in_the_baton(runs):
    baton = Baton(open_store(runs["fsdp_url"]))
    commits = [baton.manifest(g) for g in baton.gens()]
    assert [c["step"] for c in commits] == [CUT, STEPS]
    for commit in commits:
        assert commit["format"] == SHARDED_FORMAT and commit["world"] == 2
        names = set(commit["objects"])
        assert {"state", "dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp"} <= names
        assert baton.latest()["gen"] == commits[-1]["gen"]  # every object verifies against the manifest
    diff = rel_diff(runs["fsdp"], runs["ddp"])
    assert diff <= TOLERANCE, diff


def test_fsdp_checkpoint_resumes_at_world_1(runs, tmp_path):
    url = str(tmp_path / "run")
    shutil.copytree(runs["cut_url"], url)
    diff = rel_diff(_train_one_process(url, STEPS, tmp_path), runs["ddp"])
    assert diff <= TOLERANCE, diff


def test_fsdp_checkpoint_resumes_at_world_4(runs, tmp_path):
    url = str(tmp_path / "run")
    shutil.copytree(runs["cut_url"], url)
    weights = _train(tmp_path, url, 4, STEPS, "fsdp4")
    diff = rel_diff(weights, runs["ddp"])
    assert diff <= TOLERANCE, diff
    assert Baton(open_store(url)).latest()["world"] == 4


def test_sharded_save_that_loses_the_race_leaves_nothing(stdlib_dataset, tmp_path):
    """Fenced like a leg's commit: when another worker created the manifest first, save_sharded returns None and
    deletes every object it uploaded; the competitor's commit stands."""
    import torch.distributed as dist

    from relaytrain_runtime import distributed
    from relaytrain_runtime.contract.keys import CKPT_PREFIX, commit_key
    from relaytrain_runtime.model import build_model
    from relaytrain_runtime.spec import RunSpec
    from relaytrain_runtime.train import make_optimizer
    from tests.fixtures.runs import TINY_SPEC

    shutil.copytree(stdlib_dataset / "data", tmp_path / "run" / "data")
    baton = Baton(open_store(str(tmp_path / "run")))
    baton.init(RunSpec(**{**TINY_SPEC, **SPEC, "parallelism": "fsdp"}))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        spec = baton.spec()
        model = distributed.wrap_model(build_model(spec.model, seed=0), "fsdp", torch.device("cpu"), 1)
        assert distributed.is_sharded(model)
        optimizer = make_optimizer(model, spec)
        assert baton.store.create(commit_key(1), b'{"gen": 1, "objects": {}, "step": 0}')  # the competitor
        baton.next_gen = 1  # we resumed before it committed
        meta = {"step": 1, "tokens": 0, "loss": 0.0, "done": False, "cost_usd": 0.0}
        assert distributed.save_sharded(baton, 0, model, optimizer, meta, "late", tmp_path / "staging") is None
    finally:
        dist.destroy_process_group()
    assert baton.store.list(CKPT_PREFIX) == []
    assert baton.store.read(commit_key(1)) == b'{"gen": 1, "objects": {}, "step": 0}'


def test_compile_keeps_its_cache_on_the_nodes_disk(tmp_path, monkeypatch):
    from relaytrain_runtime.model import build_model
    from relaytrain_runtime.presets import get_preset
    from relaytrain_runtime.speed import INDUCTOR_CACHE_ENV, compile_model

    monkeypatch.setenv(INDUCTOR_CACHE_ENV, "unset")  # recorded, so teardown restores the environment as it was
    monkeypatch.delenv(INDUCTOR_CACHE_ENV)
    model = build_model(get_preset("tiny-gpt"), seed=0)
    compiled = compile_model(model, tmp_path / "cache")  # lazy: compiles at its first call, not here
    assert compiled is not model and compiled._orig_mod is model
    assert os.environ[INDUCTOR_CACHE_ENV] == str(tmp_path / "cache" / "inductor")
    assert (tmp_path / "cache" / "inductor").is_dir()


def test_a_leg_checkpoint_continues_under_fsdp(runs, tmp_path):
    """Moving the other way: a plain checkpoint committed by a leg (safetensors) loads into FSDP at world 2."""
    from relaytrain_runtime.leg import run_leg

    url = str(tmp_path / "run")
    shutil.copytree(runs["cut_url"], url, ignore=shutil.ignore_patterns("baton", "ckpt", "legs"))
    leg = run_leg(url, max_steps=CUT, threads=1)
    assert leg["step"] == CUT and "format" not in Baton(open_store(url)).latest()
    weights = _train(tmp_path, url, 2, STEPS, "from-leg")
    diff = rel_diff(weights, runs["ddp"])
    assert diff <= TOLERANCE, diff
    assert Baton(open_store(url)).latest()["format"] == SHARDED_FORMAT
