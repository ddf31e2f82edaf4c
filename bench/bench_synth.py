"""Synthesis time: every AWS blueprint in one process against one blueprint, plus jsii's cold start.

Each measurement is a fresh `python -m relaytrain synth FILE... --out DIR` process (imports, jsii
start, app, cdk-nag, templates written), timed by wall clock:
  cold   one blueprint with an empty jsii package cache (the first synth on a machine)
  one    one blueprint, warm cache (median of --repeats)
  all    every AWS blueprint of the catalog in one process, warm cache (median of --repeats)
Ratios: all/one, and all/(N x one), the cost of one process for N blueprints against N processes.

    python bench/bench_synth.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "runtime"), str(ROOT / "stacks")]


def synth(files: list[str], env: dict | None = None) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "relaytrain", "synth", *files, "--out", out],
                       check=True, capture_output=True, env={**os.environ, **(env or {})}, cwd=ROOT)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "runtime"), str(ROOT / "stacks"), os.environ.get("PYTHONPATH", "")]
    )
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

    from relaytrain.blueprint import catalog_files, load

    files = [str(f) for f in catalog_files() if load(f).cloud == "aws"]
    one = next(f for f in files if "tiny-gpt-lambda-steps" in f)
    with tempfile.TemporaryDirectory() as cache:
        cold = synth([one], {"JSII_RUNTIME_PACKAGE_CACHE_ROOT": cache})
    synth([one])  # make sure the default cache is warm
    t_one = statistics.median(synth([one]) for _ in range(args.repeats))
    t_all = statistics.median(synth(files) for _ in range(args.repeats))
    n = len(files)
    print(f"AWS blueprints: {n}; repeats: {args.repeats}; python {sys.version.split()[0]}")
    print(f"{'measurement':<44}{'seconds':>9}")
    print(f"{'cold: 1 blueprint, empty jsii cache':<44}{cold:>9.2f}")
    print(f"{'warm: 1 blueprint (median)':<44}{t_one:>9.2f}")
    print(f"{f'warm: all {n} blueprints, one process (median)':<44}{t_all:>9.2f}")
    print(f"ratio all/one                      {t_all / t_one:.2f}")
    print(f"ratio all/({n} x one)                {t_all / (n * t_one):.2f}  (one process vs one process per blueprint)")
    print(f"cold start overhead (cold - one)   {cold - t_one:.2f} s")


if __name__ == "__main__":
    main()
