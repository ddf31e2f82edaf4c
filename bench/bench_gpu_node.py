"""The GPU node's speed on one GPU: tokens/s, MFU and peak memory per precision, checkpoint save/load seconds,
and a short node run to its final commit.

    python bench/bench_gpu_node.py                 # on a CUDA machine: gpt2-small and the 1.1B shape
    python bench/bench_gpu_node.py --smoke         # anywhere (the default without CUDA): tiny shapes, CPU

Models: gpt2-small, and the 1.1B Llama-family *shape* (22 layers, d_model 2048, 32 heads, d_ff 5632 x 1.5 so the
GPT block has the SwiGLU MLP's parameter count, vocab 32000, 2048 positions) built as the runtime's GPT family:
the same size and FLOPs per token. Configurations: fp32 (TF32 matmuls on Ampere+), bf16-mixed,
bf16-mixed + torch.compile. Each trains on random tokens through the runtime's own forward_backward /
apply_update (fused AdamW on CUDA) for --warmup then --steps optimizer steps, timed with CUDA syncs at the
ends only. MFU = flops_per_token x tokens/s / the GPU's dense peak for the precision
(relaytrain_runtime.throughput). Checkpoint: the node's commit (device -> host copy, safetensors, sha256,
manifest) into a file store, and its load, in seconds. Short run: `relaytrain_runtime node` on a fresh tiny-gpt
run to its final commit and evaluation. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

import torch  # noqa: E402

from relaytrain_runtime.baton import Baton  # noqa: E402
from relaytrain_runtime.model import build_model, model_tensors  # noqa: E402
from relaytrain_runtime.precision import Precision, enable_tf32  # noqa: E402
from relaytrain_runtime.presets import ModelConfig, get_preset  # noqa: E402
from relaytrain_runtime.spec import RunSpec  # noqa: E402
from relaytrain_runtime.speed import compile_model  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402
from relaytrain_runtime.throughput import flops_per_token, gpu_of_device_name, peak_flops  # noqa: E402
from relaytrain_runtime.train import apply_update, forward_backward, make_optimizer  # noqa: E402

SHAPE_1B = ModelConfig("gpt", vocab_size=32000, n_positions=2048, d_model=2048, n_layers=22, n_heads=32,
                       d_ff=5632 * 3 // 2)
SMOKE = ModelConfig("gpt", vocab_size=512, n_positions=64, d_model=64, n_layers=2, n_heads=2, d_ff=256)
# (model, sequence length, micro batch, global batch) per model on one GPU
MODELS = {"gpt2-small": (get_preset("gpt2-small"), 1024, 8, 32), "llama-1.1b-shape": (SHAPE_1B, 2048, 4, 16)}
CONFIGS = [("fp32", False), ("bf16-mixed", False), ("bf16-mixed", True)]


class _Spec:
    """The RunSpec fields the training functions read, for a model that is not a preset."""

    def __init__(self, base: RunSpec, micro: int, batch: int):
        self._base, self.micro_batch, self.batch_size = base, micro, batch

    def __getattr__(self, name):
        return getattr(self._base, name)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: ModelConfig, seq: int, micro: int, batch: int, precision: str, compiled: bool, device,
            warmup: int, steps: int, cache: Path) -> dict:
    spec = _Spec(RunSpec(steps=warmup + steps, precision=precision, lr=1e-4, warmup_steps=1), micro, batch)
    model = build_model(cfg, seed=0).to(device)
    optimizer = make_optimizer(model, spec)
    amp = Precision.for_run(spec, device)
    trained = compile_model(model, cache) if compiled else model
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen).to(device)
    b = {"input_ids": ids, "labels": ids}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_compile = time.perf_counter()
    for step in range(warmup):
        forward_backward(trained, spec, b, amp=amp)
        apply_update(model, optimizer, spec, step, amp=amp)
    _sync(device)
    warm_s = time.perf_counter() - t_compile
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        forward_backward(trained, spec, b, amp=amp)
        apply_update(model, optimizer, spec, step, amp=amp)
    _sync(device)
    seconds = time.perf_counter() - t0
    tokens_per_s = steps * batch * seq / seconds
    gpu = gpu_of_device_name(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    peak = peak_flops(gpu, precision)
    out = {"precision": precision, "compile": compiled, "tokens_per_s": round(tokens_per_s, 1),
           "step_s": round(seconds / steps, 4), "warmup_s": round(warm_s, 2),
           "mfu": round(tokens_per_s * flops_per_token(cfg, seq) / peak, 4) if peak else None,
           "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 1024**3, 2) if device.type == "cuda"
           else None}
    out["checkpoint"] = checkpoint_seconds(model, optimizer, cache)
    return out


def checkpoint_seconds(model, optimizer, tmp: Path) -> dict:
    """The node's commit of this state into a file store, and loading it back (seconds)."""
    store = open_store(str(tmp / f"ckpt-{time.time_ns()}"))
    baton = Baton(store)
    _sync(next(model.parameters()).device)
    t0 = time.perf_counter()
    weights = {k: v.detach().cpu() for k, v in model_tensors(model).items()}
    opt = optimizer.state_dict()
    state = {i: {k: v.cpu() if torch.is_tensor(v) else v for k, v in s.items()} for i, s in opt["state"].items()}
    opt = {"state": state, "param_groups": opt["param_groups"]}
    commit = baton.commit(0, {"weights": weights, "optimizer": opt, "meta": {"step": 1}}, leg_id="bench")
    save_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    baton.load(commit)
    return {"save_s": round(save_s, 3), "load_s": round(time.perf_counter() - t1, 3),
            "bytes": sum(o["size"] for o in commit["objects"].values())}


def short_run(tmp: Path, steps: int) -> dict:
    """`relaytrain_runtime node` on a fresh tiny-gpt run, to its final commit and evaluation."""
    url = str(tmp / "run")
    runtime = str(Path(__file__).resolve().parent.parent / "runtime")
    Baton(open_store(url)).init(RunSpec(preset="tiny-gpt", steps=steps, batch_size=16, seq_len=128, eval_batches=2))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "node", "--store", url], capture_output=True,
                         text=True, env={**__import__("os").environ, "PYTHONPATH": runtime}, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    status = json.loads(out.stdout.strip().splitlines()[-1])
    baton = Baton(open_store(url))
    latest = baton.latest()
    return {"seconds": round(time.perf_counter() - t0, 2), "status": status["status"], "step": latest["step"],
            "final_commit_gen": latest["gen"], "val_loss": baton.read_state(latest).get("val_loss"),
            "throughput": status.get("throughput"), "device": status["device"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on whatever device (default without CUDA)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--run-steps", type=int, default=200, help="steps of the short node run")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    smoke = args.smoke or not cuda
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    enable_tf32(device)
    models = {"smoke": (SMOKE, 32, 2, 4)} if smoke else {m: MODELS[m] for m in args.models.split(",")}
    configs = [c for c in CONFIGS if not (smoke and c[1])]  # no compile in the CPU smoke (needs a C++ toolchain)
    result = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__,
              "smoke": smoke, "models": {}}
    with tempfile.TemporaryDirectory(prefix="relaytrain-bench-gpu-") as tmp:
        tmp = Path(tmp)
        for name, (cfg, seq, micro, batch) in models.items():
            rows = []
            for precision, compiled in configs:
                rows.append(measure(cfg, seq, micro, batch, precision, compiled, device,
                                    1 if smoke else args.warmup, 2 if smoke else args.steps, tmp))
                print(json.dumps({name: rows[-1]}), file=sys.stderr, flush=True)
            base = rows[0]["tokens_per_s"]
            for row in rows:
                row["speedup_vs_fp32"] = round(row["tokens_per_s"] / base, 2) if base else None
            result["models"][name] = {"params": cfg.param_count(), "seq_len": seq, "micro_batch": micro,
                                      "batch": batch, "runs": rows}
        result["short_run"] = short_run(tmp, 4 if smoke else args.run_steps)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
