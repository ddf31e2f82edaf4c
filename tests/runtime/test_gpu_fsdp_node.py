"""`parallelism: fsdp` through the node entry point (`relaytrain_runtime node` under torchrun, gloo on CPU): the
engine wraps the model in FSDP2, commits DCP checkpoints from every rank and resumes them at another world size.

The spec and the tolerance are test_gpu_fsdp's (tiny GPT, 6 steps of a global batch of 8 in micro-batches of 2).
"""

import json
import shutil
import subprocess

import pytest

from relaytrain_runtime.baton import SHARDED_FORMAT, Baton
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import TINY_SPEC, new_run, node_cmd
from tests.fixtures.shards import rel_diff

STEPS, CUT = 6, 3
SPEC = {**TINY_SPEC, "steps": STEPS, "batch_size": 8, "micro_batch_size": 2, "seq_len": 32}
TOLERANCE = 1e-5  # test_gpu_fsdp's: ||w - w_ddp|| / ||w_ddp||, float rounding only


def node(url: str, *extra, nproc: int) -> dict:
    """Run `relaytrain_runtime node` (under torchrun when nproc > 1) and return rank 0's status."""
    out = subprocess.run(node_cmd(url, *extra, nproc=nproc), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def init_run(path, dataset_store, **extra) -> str:
    from relaytrain_runtime.spec import RunSpec

    url = new_run(f"file://{path}", dataset_store)
    Baton(open_store(url)).init(RunSpec.from_dict({**SPEC, **extra}))
    return url


def final_weights(url: str, tmp_path) -> dict:
    """The newest commit's weights, whatever its format (a DCP one is loaded into a plain model)."""
    from relaytrain_runtime import distributed
    from relaytrain_runtime.model import build_model, model_tensors
    from relaytrain_runtime.train import make_optimizer

    baton = Baton(open_store(url))
    spec = baton.spec()
    model = build_model(spec.model, seed=spec.seed)
    optimizer = make_optimizer(model, spec)
    distributed.load_state(model, optimizer, spec, baton, baton.load(baton.latest()), tmp_path / "staging")
    return {k: v.detach().clone() for k, v in model_tensors(model).items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dataset_store):
    """DDP at world 2 to done; FSDP at world 2 for CUT steps (one DCP commit), copied, then continued to done."""
    root = tmp_path_factory.mktemp("fsdp-node")
    ddp_url = init_run(root / "ddp", dataset_store)
    ddp = node(ddp_url, nproc=2)
    fsdp_url = init_run(root / "fsdp", dataset_store, parallelism="fsdp")
    cut = node(fsdp_url, "--max-steps", str(CUT), nproc=2)
    shutil.copytree(root / "fsdp", root / "fsdp-at-cut")
    fsdp = node(fsdp_url, nproc=2)
    return {"root": root, "ddp_url": ddp_url, "ddp": ddp, "cut": cut, "fsdp_url": fsdp_url, "fsdp": fsdp,
            "ddp_weights": final_weights(ddp_url, root)}


def test_fsdp_node_trains_to_done_with_dcp_commits_and_matches_ddp(runs):
    assert runs["ddp"]["done"] and runs["ddp"]["world"] == 2
    assert runs["cut"]["step"] == CUT and not runs["cut"]["done"]
    assert runs["fsdp"]["done"] and runs["fsdp"]["step"] == STEPS and runs["fsdp"]["world"] == 2
    assert runs["fsdp"]["val_loss"] is not None  # the final evaluation ran (collectively) before the commit
    baton = Baton(open_store(runs["fsdp_url"]))
    commits = [baton.manifest(g) for g in baton.gens()]
    assert [c["step"] for c in commits] == [CUT, STEPS]
    for commit in commits:
        assert commit["format"] == SHARDED_FORMAT and commit["world"] == 2
        assert {"state", "dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp"} <= set(commit["objects"])
    assert baton.latest()["gen"] == commits[-1]["gen"]  # every object verifies against the manifest
    assert "format" not in Baton(open_store(runs["ddp_url"])).latest()  # DDP still commits a plain checkpoint
    diff = rel_diff(final_weights(runs["fsdp_url"], runs["root"]), runs["ddp_weights"])
    assert diff <= TOLERANCE, diff
    assert abs(runs["fsdp"]["val_loss"] - runs["ddp"]["val_loss"]) <= 1e-4 * abs(runs["ddp"]["val_loss"])


def test_fsdp_node_checkpoint_resumes_at_world_1(runs, tmp_path):
    url = f"file://{tmp_path / 'run'}"
    shutil.copytree(runs["root"] / "fsdp-at-cut", tmp_path / "run")
    status = node(url, nproc=1)
    assert status["done"] and status["step"] == STEPS and status["world"] == 1
    diff = rel_diff(final_weights(url, tmp_path), runs["ddp_weights"])
    assert diff <= TOLERANCE, diff


def test_fsdp_node_loss_stream_matches_ddp(runs):
    """The engine's FSDP loss stream is the one a DDP node records, step by step."""
    from relaytrain_runtime.contract.metrics import read_stream

    curves = [[(r["step"], r["loss"]) for r in read_stream(open_store(u), "train")]
              for u in (runs["fsdp_url"], runs["ddp_url"])]
    assert [s for s, _ in curves[0]] == [s for s, _ in curves[1]] == list(range(1, STEPS + 1))
    for (step, loss_fsdp), (_, loss_ddp) in zip(*curves, strict=True):
        assert abs(loss_fsdp - loss_ddp) <= 1e-5 * abs(loss_ddp), (step, loss_fsdp, loss_ddp)

