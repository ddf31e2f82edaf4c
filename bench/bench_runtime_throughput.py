"""Trainer throughput against a bare PyTorch loop on the same model, batch and thread count, in one run.

    python bench/bench_runtime_throughput.py [--preset tiny-gpt] [--batch-size 16] [--seq-len 128] [--steps 20] \\
        [--rounds 5]

"trainer": relaytrain_runtime.train.train_step (batch built from the dataset for (seed, step), micro batches,
clipping, LR schedule, AdamW). "bare": the textbook loop on a pre-built random batch: forward, backward,
clip, AdamW step. Rounds alternate trainer/bare to spread out machine noise; reports the best-of-rounds ratio
and the median of the per-round ratios.
Prints one JSON object; target ratio >= 0.98.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

import torch  # noqa: E402

from relaytrain_runtime import determinism  # noqa: E402
from relaytrain_runtime.data import ensure_dataset, open_dataset  # noqa: E402
from relaytrain_runtime.spec import RunSpec  # noqa: E402
from relaytrain_runtime.store import open_store  # noqa: E402
from relaytrain_runtime.train import build, train_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny-gpt")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dataset-dir", default=None, help="a store holding a prepared stdlib dataset (else built)")
    args = ap.parse_args()
    threads = determinism.configure()
    spec = RunSpec(preset=args.preset, steps=10_000, batch_size=args.batch_size, seq_len=args.seq_len)
    store = open_store(args.dataset_dir or tempfile.mkdtemp(prefix="rt-bench-tp-"))
    ensure_dataset(store, spec)
    dataset = open_dataset(store, spec)

    model, optimizer = build(spec)
    bare_model, _ = build(spec)
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=spec.lr, betas=(spec.beta1, spec.beta2),
                                 weight_decay=spec.weight_decay, foreach=False)
    ids = torch.randint(3, spec.model.vocab_size, (spec.batch_size, spec.sequence_length))
    labels = ids if spec.model.family == "gpt" else torch.where(torch.rand(ids.shape) < 0.15, ids, -100)

    def bare_step() -> None:
        _, loss = bare_model(ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bare_model.parameters(), spec.grad_clip)
        bare_opt.step()
        bare_opt.zero_grad(set_to_none=True)
        loss.item()

    step = 0

    def trainer_step() -> None:
        nonlocal step
        train_step(model, optimizer, spec, dataset, step)
        step += 1

    def rate(fn) -> float:
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return args.steps / (time.perf_counter() - t0)

    trainer, bare = [], []
    for _ in range(args.rounds):
        trainer.append(rate(trainer_step))
        bare.append(rate(bare_step))
    print(
        json.dumps(
            {
                "preset": args.preset,
                "batch_size": args.batch_size,
                "seq_len": spec.sequence_length,
                "threads": threads,
                "steps_per_round": args.steps,
                "rounds": args.rounds,
                "trainer_steps_per_s": [round(x, 3) for x in trainer],
                "bare_steps_per_s": [round(x, 3) for x in bare],
                "ratio_best": round(max(trainer) / max(bare), 4),
                "ratio_median_paired": round(statistics.median(t / b for t, b in zip(trainer, bare, strict=True)), 4),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
