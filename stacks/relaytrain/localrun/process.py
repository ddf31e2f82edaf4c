"""Run runtime verbs in child processes and read what they left in the store (no torch here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.keys import LEGS_PREFIX
from relaytrain_runtime.store import open_store


def threads_for(vcpu: float) -> int:
    """Local threads that stand in for a worker's vCPUs (at most this machine's cores)."""
    return max(1, min(os.cpu_count() or 1, round(vcpu)))


def runtime(verb: str, args: list[str], *, threads: int, capture: bool = False) -> str:
    """`python -m relaytrain_runtime VERB ARGS` with its stderr passed through; RelayError on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "relaytrain_runtime", verb, *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE if capture else sys.stderr,
                            stderr=subprocess.PIPE, text=True)
    last_error = ""
    for line in proc.stderr:
        if ": error: " in line:
            last_error = line.split(": error: ", 1)[1].strip()
        sys.stderr.write(line)
    out = proc.stdout.read() if capture else ""
    if proc.wait() != 0:
        raise RelayError(f"relaytrain-runtime {verb} failed: {last_error or f'exit code {proc.returncode}'}")
    return out


def leg_statuses(store_url: str) -> list[dict]:
    """The status of every committed leg (relaytrain_runtime.contract.keys.leg_status_key), in commit order."""
    store = open_store(store_url)
    return [json.loads(store.read(key)) for key in sorted(store.list(LEGS_PREFIX))]


def read_json(store_url: str, key: str) -> dict | None:
    store = open_store(store_url)
    return json.loads(store.read(key)) if store.exists(key) else None
