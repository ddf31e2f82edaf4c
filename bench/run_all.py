"""Run every benchmark in bench/ once, with small settings, as a smoke run (`make bench`).

    python bench/run_all.py            every bench_*.py with its QUICK options, one after another
    python bench/run_all.py --list     the benchmarks and the options each would get
    python bench/run_all.py --full     every bench_*.py with its own defaults (the settings docs/BENCHMARKS.md reports)
    python bench/run_all.py NAME ...   only those (e.g. runtime_import shards_bytes)

QUICK options shrink models, repeats and steps so the whole set finishes in minutes on a laptop:
they show that each benchmark runs, not what it measures. Numbers worth quoting come from `--full`
(or from running one script with its defaults) on an idle machine, recorded in docs/BENCHMARKS.md
with the exact command. A benchmark without an entry in QUICK is refused, so a new script cannot be
skipped silently. Exits non-zero when any benchmark fails; prints one summary line per benchmark.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

BENCH = pathlib.Path(__file__).resolve().parent

QUICK: dict[str, list[str]] = {
    "blueprints_plan_accuracy": [],  # the README demo blueprint: plan, calibrate, a real local run
    "cloud_startup": ["--repeat", "1"],
    "data_batch": ["--batches", "5", "--steps", "0"],  # batch assembly only (a gpt2-small step takes minutes on CPU)
    "data_prepare": ["--mb", "0.5", "--rounds", "1"],
    "gpu_node": ["--smoke"],  # tiny shapes on whatever device; the real command runs on a GPU machine
    "models_coldstart": ["--presets", "tiny-gpt", "--repeat", "1"],
    "models_finetune": ["--preset", "tiny-llama", "--steps", "1", "--loop-preset", "tiny-llama", "--loop-steps", "2",
                        "--rounds", "1"],
    "cloud_store": ["--preset", "tiny-gpt", "--repeat", "1"],
    "runtime_checkpoint": ["--preset", "tiny-gpt", "--repeat", "1"],
    "runtime_import": ["--repeat", "1"],
    "runtime_relay": ["--preset", "tiny-gpt"],
    "runtime_throughput": ["--steps", "2", "--rounds", "1"],
    "shards_bytes": ["--shards", "2", "--steps", "32"],
    "shards_exchange": ["--models", "tiny-gpt", "--shards", "2", "--stores", "file", "--dtypes", "fp32",
                        "--repeat", "1"],
    "synth": ["--repeats", "1"],
}


def scripts() -> dict[str, pathlib.Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH.glob("bench_*.py"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and their quick options")
    ap.add_argument("--full", action="store_true", help="run with each script's own defaults")
    args = ap.parse_args(argv)
    found = scripts()
    missing = sorted(set(found) - set(QUICK))
    if missing:
        print(f"run_all: no QUICK options for {', '.join(missing)}: add them to bench/run_all.py", file=sys.stderr)
        return 2
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        print(f"run_all: unknown benchmark(s) {', '.join(unknown)} (known: {', '.join(found)})", file=sys.stderr)
        return 2
    chosen = args.names or list(found)
    if args.list:
        for name in chosen:
            print(f"{name:<26} python bench/{found[name].name} {' '.join(QUICK[name])}".rstrip())
        return 0
    failed = []
    for name in chosen:
        options = [] if args.full else QUICK[name]
        print(f"== {name}: python bench/{found[name].name} {' '.join(options)}".rstrip(), flush=True)
        t0 = time.time()
        rc = subprocess.run([sys.executable, str(found[name]), *options]).returncode
        print(f"== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.time() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"run_all: {len(failed)} of {len(chosen)} failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
