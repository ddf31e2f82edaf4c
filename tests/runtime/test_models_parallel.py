"""LoRA on a pretrained tiny Llama across workers: function shards in exact mode (sync: gradients) equal one
worker accumulating the same global batch (bitwise) and one-pass within 1e-5; DDP under torchrun (gloo, 2 ranks)
within 1e-5 of one process."""

import json
import subprocess

import peft  # noqa: F401 (a runtime dependency: a missing one must fail, not skip)

from relaytrain_runtime.baton import Baton
from relaytrain_runtime.leg import run_leg
from relaytrain_runtime.store import open_store
from tests.fixtures.runs import node_cmd
from tests.fixtures.shards import bitwise_equal, drive, rel_diff, weights

LORA = dict(finetune="lora", batch_size=8, steps=4)


def test_lora_function_shards_equal_one_worker(pretrained_run, pretrained_dirs):
    src = pretrained_dirs["single"]
    single = pretrained_run(src, "single", micro_batch_size=4, **LORA)
    assert run_leg(single)["done"]
    one_pass = pretrained_run(src, "one-pass", **LORA)
    assert run_leg(one_pass)["done"]
    sharded = pretrained_run(src, "shards", **LORA)
    spec = Baton(open_store(sharded)).spec().to_dict()
    out = drive(sharded, spec, {"shards": 2, "sync": "gradients"})
    assert out[-1]["done"] and out[-1]["step"] == LORA["steps"]
    got = weights(sharded)
    assert got and all("lora_" in name for name in got)
    assert bitwise_equal(got, weights(single))
    assert rel_diff(got, weights(one_pass)) <= 1e-5


def test_lora_ddp_two_ranks_within_1e5_of_one_process(pretrained_run, pretrained_dirs):
    src = pretrained_dirs["single"]
    urls = {n: pretrained_run(src, f"node{n}", **LORA) for n in (1, 2)}
    for n, url in urls.items():
        proc = subprocess.run(node_cmd(url, nproc=n), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["done"]
    assert rel_diff(weights(urls[2]), weights(urls[1])) <= 1e-5
