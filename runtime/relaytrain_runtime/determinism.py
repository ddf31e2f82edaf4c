"""Determinism: deterministic kernels, a fixed thread count, and the RNG states that travel in a checkpoint.

On CPU, with the same thread count, a run cut into legs replays exactly the arithmetic of one
uninterrupted run: weights end bitwise identical. The data position needs no RNG (batches are pure
functions of (seed, step)); the torch, numpy and python RNGs (dropout, anything user code draws)
are saved and restored with every checkpoint.
"""

from __future__ import annotations

import base64
import os
import random
import sys

import numpy as np
import torch


def configure(threads: int | None = None, deterministic: bool = True) -> int:
    """A fixed intra-op thread count: `threads`, else $OMP_NUM_THREADS, else torch's default for this machine
    (its physical cores), and deterministic algorithms when `deterministic` (the run spec's field on a GPU
    node; CPU training is deterministic either way). Legs of one run are bitwise identical to an
    uninterrupted run when they use the same count: same worker size, or OMP_NUM_THREADS pinned."""
    if "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(deterministic)
    else:
        # The public call imports torch._inductor.config (~1 s of every leg's cold start) only to
        # set a flag of the compiler, which the runtime does not use; set the kernel flag directly.
        torch._C._set_deterministic_algorithms(deterministic)
    if torch.cuda.is_available():
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.backends.cudnn.benchmark = not deterministic
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def capture_rng() -> dict:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_version, list(py_state), py_gauss],
    }


def restore_rng(state: dict) -> None:
    raw = np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()
    torch.set_rng_state(torch.from_numpy(raw))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
