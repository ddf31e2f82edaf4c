"""The GPU/VM node entry point on CPU: single process, DDP under torchrun (gloo), SIGTERM, power-off."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.contract.metrics import read_stream
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import new_run, node_cmd
from tests.fixtures.shards import rel_diff

SPEC = {"preset": "tiny-gpt", "steps": 16, "batch_size": 8, "seq_len": 128, "eval_batches": 2, "keep_last": 2}


def init_run(path, dataset_store) -> str:
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.spec import RunSpec

    url = new_run(f"file://{path}", dataset_store)
    Baton(open_store(url)).init(RunSpec.from_dict(SPEC))
    return url


def final_weights(url: str) -> dict:
    baton = Baton(open_store(url))
    return baton.load(baton.latest())["weights"]


@pytest.fixture(scope="module")
def single(tmp_path_factory, dataset_store):
    """One process, run to the end, with power-off when done."""
    root = tmp_path_factory.mktemp("single")
    url = init_run(root / "run", dataset_store)
    marker = root / "powered-off"
    out = subprocess.run(node_cmd(url, "--poweroff-when-done", "--cost-per-second", "0.001"),
                         env={**os.environ, "RELAYTRAIN_POWEROFF_CMD": f"touch {marker}"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return url, json.loads(out.stdout.strip().splitlines()[-1]), marker


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, dataset_store):
    """torchrun --nproc-per-node 2 (gloo), run to the end without interruption."""
    url = init_run(tmp_path_factory.mktemp("ddp") / "run", dataset_store)
    out = subprocess.run(node_cmd(url, nproc=2), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return url, json.loads(out.stdout.strip().splitlines()[-1])


def test_single_node_matches_a_leg_and_powers_off(single, dataset_store, tmp_path):
    from relaytrain_runtime.leg import run_leg

    url, status, marker = single
    assert status["status"] == "done" and status["done"] and status["step"] == 16 and status["world"] == 1
    assert status["cost_usd"] > 0
    leg = run_leg(new_run(f"file://{tmp_path}/leg", dataset_store), spec=SPEC)
    assert status["weights_sha256"] == leg["weights_sha256"]  # the node trains exactly like a leg
    assert marker.exists()
    assert json.loads(open_store(url).read(f"eval/{status['gen']:08d}.json"))["loss"] == leg["val_loss"]


def test_ddp_two_ranks_matches_single_process(single, ddp):
    """Same global batch, split over two gloo ranks: the model after 16 steps is the single process's
    within 1e-5 relative (||w_ddp - w_1|| / ||w_1||), and so is the loss at every step.

    (Not per tensor: the attention key bias has an exactly-zero true gradient, so its gradient is
    pure rounding noise that Adam scales up to full-size steps in either run.)"""
    (single_url, _, _), (ddp_url, status) = single, ddp
    assert status["done"] and status["world"] == 2 and status["step"] == 16
    diff = rel_diff(final_weights(ddp_url), final_weights(single_url))
    assert diff <= 1e-5, diff
    curves = [[(r["step"], r["loss"], r["lr"]) for r in read_stream(open_store(u), "train")]
              for u in (ddp_url, single_url)]
    assert len(curves[0]) == len(curves[1]) == 16
    for (step, loss_ddp, _), (_, loss_1, _) in zip(*curves, strict=True):
        assert abs(loss_ddp - loss_1) <= 1e-5 * abs(loss_1), (step, loss_ddp, loss_1)


def test_sigterm_checkpoints_and_restart_finishes_identically(ddp, dataset_store, tmp_path):
    url = init_run(tmp_path / "run", dataset_store)
    proc = subprocess.Popen(node_cmd(url, "--progress", "--checkpoint-every", "3600", nproc=2),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = threading.Event()

    def watch():
        for line in proc.stderr:
            if line.startswith("@progress ") and json.loads(line.split(" ", 1)[1])["step"] >= 3:
                seen.set()

    threading.Thread(target=watch, daemon=True).start()
    assert seen.wait(240), "the node never reached step 3"
    proc.send_signal(signal.SIGTERM)  # what the OS sends torchrun on a spot notice or preemption
    out, _ = proc.communicate(timeout=120)
    status = json.loads(out.strip().splitlines()[-1])  # rank 0's status, printed after its checkpoint
    assert status["stopped_by"] == "SIGTERM" and status["status"] == "ok" and not status["done"]
    assert 3 <= status["step"] < 16 and status["commits"] == 1
    latest = Baton(open_store(url)).latest()
    assert latest["step"] == status["step"]  # no step was lost: the checkpoint is the stop point

    # the machine boots again: resume from the baton and finish
    again = subprocess.run(node_cmd(url, nproc=2), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    final = json.loads(again.stdout.strip().splitlines()[-1])
    assert final["done"] and final["leg_steps"] == 16 - status["step"]
    assert final["weights_sha256"] == ddp[1]["weights_sha256"]


def test_single_node_sigterm_exits_zero_after_checkpoint(dataset_store, tmp_path):
    url = init_run(tmp_path / "run", dataset_store)
    proc = subprocess.Popen(node_cmd(url, "--progress"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("@progress "):
            proc.send_signal(signal.SIGTERM)
            break
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    status = json.loads(out.strip().splitlines()[-1])
    assert status["stopped_by"] == "SIGTERM" and Baton(open_store(url)).latest()["step"] == status["step"] < 16


def test_node_bad_options_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "node", "--store", f"file://{tmp_path}/x",
                          "--instance-type", "z9.mega"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--instance-type 'z9.mega' has no price" in out.stderr and out.stderr.count("\n") == 1


class Placed(torch.Tensor):
    """A token tensor that was moved with `.to(device)`: how a batch reaches the model's device."""


@pytest.fixture
def model_inputs(monkeypatch):
    """Every call of the model's forward, as (training?, were all its inputs moved to the model's device?).

    On a CPU-only machine the host and the model's device are one, so a missing transfer cannot
    fail by itself; here a token tensor counts as on the device only if it went through `.to(device)`
    (it then carries the `Placed` type), which is exactly what a GPU needs."""
    from relaytrain_runtime.model import LanguageModel

    real_to, real_forward = torch.Tensor.to, LanguageModel.forward
    calls: list[tuple[bool, bool]] = []

    def to(self, *args, **kwargs):
        out = real_to(self, *args, **kwargs)
        moved = "device" in kwargs or any(isinstance(a, (torch.device, str)) for a in args)
        return out.as_subclass(Placed) if moved and out.dtype == torch.long else out

    def forward(self, input_ids, labels=None):
        inputs = [t for t in (input_ids, labels) if t is not None]
        calls.append((self.training, all(isinstance(t, Placed) for t in inputs)))
        plain = [t.as_subclass(torch.Tensor) for t in inputs]
        return real_forward(self, *plain)

    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(LanguageModel, "forward", forward)
    return calls


def test_every_batch_reaches_the_model_on_its_device(tiny_run, model_inputs):
    """Training and evaluation batches of a node, a leg and a function-shards round all go to the
    model's device (the node's final evaluation once handed host tensors to a model on the GPU)."""
    from relaytrain_runtime.leg import run_leg
    from relaytrain_runtime.node import run_node
    from relaytrain_runtime.shards.entry import reduce_op, shard_op, status_op

    node = run_node(tiny_run(steps=2))
    leg = run_leg(tiny_run(steps=2))
    url = tiny_run(steps=1)
    status_op({"op": "status", "store": url, "functions": {"shards": 2}})
    baton = [shard_op({"op": "shard", "store": url, "round": 0, "shard": k})["baton"] for k in range(2)][0]
    shards = reduce_op({"op": "reduce", "store": url, "round": 0, "baton": baton})
    assert node["done"] and leg["done"] and shards["done"]
    training = [placed for is_training, placed in model_inputs if is_training]
    evaluation = [placed for is_training, placed in model_inputs if not is_training]
    assert len(training) == 2 + 2 + 2 and len(evaluation) == 3 * 2  # eval_batches 2 per finished run
    assert all(training) and all(evaluation), model_inputs
