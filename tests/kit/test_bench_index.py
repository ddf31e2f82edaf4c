"""`make bench` runs bench/run_all.py: it knows every benchmark script and refuses an unknown one."""

import subprocess
import sys

from tests.conftest import ROOT


def run_all(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), *args], capture_output=True, text=True)


def test_run_all_lists_every_benchmark_script():
    listed = run_all("--list")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    scripts = {p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py")}
    assert scripts and names == scripts


def test_run_all_refuses_an_unknown_benchmark():
    refused = run_all("no_such_bench")
    assert refused.returncode == 2 and "unknown benchmark(s) no_such_bench" in refused.stderr
    assert "Traceback" not in refused.stderr
