"""LoRA against full fine-tuning, and the trainer against a bare loop over the same transformers model.

    python bench/bench_models_finetune.py [--preset smollm-135m] [--steps 3] [--loop-preset tiny-llama]
        [--loop-steps 20] [--rounds 5] [--dataset-dir DIR]

Part 1 (--preset, default the 135M SmolLM shape, random weights): for finetune=full and finetune=lora
(rank 8 on q/k/v/o, the default), steps per second at batch 1 x 128, then one checkpoint committed to
a file store with the baton (bytes of its objects, save seconds) and loaded back verified (load
seconds). Ratios are full / lora.
Part 2 (--loop-preset): relaytrain_runtime.train.train_step against the textbook loop over the same
transformers model (model.hf(input_ids=..., labels=...), backward, clip, AdamW step) at batch 16 x 128,
same threads, for full and LoRA; rounds alternate; best-of-rounds ratio trainer / bare (target >= 0.98).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

import torch  # noqa: E402

from relaytrain_runtime import determinism  # noqa: E402
from relaytrain_runtime.baton import Baton  # noqa: E402
from relaytrain_runtime.data import batch, ensure_dataset, open_dataset  # noqa: E402
from relaytrain_runtime.model import model_tensors  # noqa: E402
from relaytrain_runtime.spec import RunSpec  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402
from relaytrain_runtime.train import build, train_step  # noqa: E402


def checkpoint_part(preset: str, steps: int, dataset_dir: str) -> dict:
    out = {}
    for mode in ("full", "lora"):
        spec = RunSpec(preset=preset, steps=10_000, batch_size=1, seq_len=128, finetune=mode)
        dataset = open_dataset(open_store(dataset_dir), spec)
        model, optimizer = build(spec)
        train_step(model, optimizer, spec, dataset, 0)  # warm-up; creates the AdamW moments
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            train_step(model, optimizer, spec, dataset, step)
        rate = steps / (time.perf_counter() - t0)
        store = open_store(tempfile.mkdtemp(prefix=f"rt-bench-ft-{mode}-"))
        baton = Baton(store)
        baton.init(spec)
        weights = {k: v.detach() for k, v in model_tensors(model).items()}
        state = {"weights": weights, "optimizer": optimizer.state_dict(),
                 "meta": {"step": steps + 1, "tokens": 0, "loss": 0.0, "done": False, "cost_usd": 0.0, "rng": {}}}
        t0 = time.perf_counter()
        commit = baton.commit(0, state)
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        Baton(store).load(commit)
        load_s = time.perf_counter() - t0
        size = sum(o["size"] for o in commit["objects"].values())
        out[mode] = {"steps_per_s": round(rate, 4), "checkpoint_bytes": size, "save_s": round(save_s, 3),
                     "load_s": round(load_s, 3), "trainable": sum(p.numel() for p in weights.values())}
        del model, optimizer, state, weights
    full, lora = out["full"], out["lora"]
    out["full_over_lora"] = {"checkpoint_bytes": round(full["checkpoint_bytes"] / lora["checkpoint_bytes"], 1),
                             "save_s": round(full["save_s"] / lora["save_s"], 1),
                             "load_s": round(full["load_s"] / lora["load_s"], 1),
                             "steps_per_s": round(full["steps_per_s"] / lora["steps_per_s"], 3)}
    return out


def loop_part(preset: str, steps: int, rounds: int, dataset_dir: str) -> dict:
    out = {}
    for mode in ("full", "lora"):
        spec = RunSpec(preset=preset, steps=10_000, batch_size=16, seq_len=128, finetune=mode)
        dataset = open_dataset(open_store(dataset_dir), spec)
        model, optimizer = build(spec)
        bare_model, _ = build(spec)
        hf = bare_model.hf
        bare_opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=spec.lr,
                                     betas=(spec.beta1, spec.beta2), weight_decay=spec.weight_decay, foreach=False)
        fixed = batch(spec, 0, 0, 1, dataset)
        ids, labels = fixed["input_ids"], fixed["labels"]
        counter = {"step": 0}

        def bare_step() -> None:
            loss = hf(input_ids=ids, labels=labels).loss  # noqa: B023
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), spec.grad_clip)  # noqa: B023
            bare_opt.step()  # noqa: B023
            bare_opt.zero_grad(set_to_none=True)  # noqa: B023
            loss.item()

        def trainer_step() -> None:
            train_step(model, optimizer, spec, dataset, counter["step"])  # noqa: B023
            counter["step"] += 1  # noqa: B023

        def rate(fn) -> float:
            fn()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            return steps / (time.perf_counter() - t0)

        trainer, bare = [], []
        for _ in range(rounds):
            trainer.append(rate(trainer_step))
            bare.append(rate(bare_step))
        out[mode] = {"trainer_steps_per_s": round(max(trainer), 3), "bare_steps_per_s": round(max(bare), 3),
                     "ratio_best": round(max(trainer) / max(bare), 3),
                     "ratio_median_paired": round(statistics.median(
                         t / b for t, b in zip(trainer, bare, strict=True)), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smollm-135m")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--loop-preset", default="tiny-llama")
    ap.add_argument("--loop-steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dataset-dir", default=None, help="a store holding a prepared stdlib dataset (else built)")
    ap.add_argument("--parts", default="checkpoint,loop", help="which parts to run (checkpoint, loop)")
    args = ap.parse_args()
    threads = determinism.configure()
    dataset_dir = args.dataset_dir or tempfile.mkdtemp(prefix="rt-bench-ds-")
    ensure_dataset(open_store(dataset_dir), RunSpec(preset="tiny-llama"))
    result = {"threads": threads, "load": os.getloadavg()[0]}
    if "checkpoint" in args.parts:
        result["checkpoint"] = {"preset": args.preset, **checkpoint_part(args.preset, args.steps, dataset_dir)}
    if "loop" in args.parts:
        result["loop"] = {"preset": args.loop_preset,
                          **loop_part(args.loop_preset, args.loop_steps, args.rounds, dataset_dir)}
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
