"""Import time of the leg entry point with torch excluded (torch already imported), against torch's own import.

    python bench/bench_runtime_import.py [--repeat 5]

Each measurement is a fresh interpreter: `import torch` first, then time `import relaytrain_runtime.leg`
(the entry point of every leg: Lambda, Cloud Function, node). Prints one JSON object; target <= 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RUNTIME = str(Path(__file__).resolve().parent.parent / "runtime")
CODE = """
import time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
import relaytrain_runtime.leg; t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": RUNTIME + os.pathsep + os.environ.get("PYTHONPATH", "")}
    torch_s, leg_s = [], []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env).stdout
        a, b = map(float, out.split())
        torch_s.append(a)
        leg_s.append(b)
    print(json.dumps({"repeat": args.repeat, "torch_import_s_median": round(statistics.median(torch_s), 3),
                      "leg_import_excl_torch_s_median": round(statistics.median(leg_s), 3),
                      "leg_import_excl_torch_s_max": round(max(leg_s), 3),
                      "leg_vs_torch_ratio": round(statistics.median(leg_s) / statistics.median(torch_s), 3)}, indent=1))


if __name__ == "__main__":
    main()
