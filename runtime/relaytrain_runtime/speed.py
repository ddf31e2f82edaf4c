"""Keeping a GPU busy: the next batch prepared while the current step runs, and torch.compile with a kept cache.

    batches = Prefetcher(lambda step: batch(spec, step, rank, world, dataset), device, start=step, stop=spec.steps)
    for step, b in batches:            # b is on `device`; the host built step+1 meanwhile
        ...
    model = compile_model(model, cache_dir)      # spec.compile: TORCHINDUCTOR_CACHE_DIR under the node's cache dir

The prefetcher assembles the next batch on a background thread (the data pipeline releases the GIL
in numpy/torch), pins it, and copies it with non_blocking=True on a side CUDA stream; the training
stream waits for that copy before it uses the batch. On CPU it is a plain background thread. Batches
are pure functions of the step, so prefetching changes nothing in the arithmetic.
"""

from __future__ import annotations

import os
import pathlib
from concurrent.futures import ThreadPoolExecutor

import torch

INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


class Prefetcher:
    def __init__(self, make_batch, device: torch.device, start: int, stop: int):
        self.make_batch, self.device, self.step, self.stop = make_batch, device, start, stop
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="relaytrain-prefetch")
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pending = self.pool.submit(self._prepare, start) if start < stop else None

    def _prepare(self, step: int) -> tuple[dict, object]:
        host = self.make_batch(step)
        if self.stream is None:
            return host, None
        with torch.cuda.stream(self.stream):
            moved = {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in host.items()}
            event = torch.cuda.Event()
            event.record(self.stream)
        return moved, event

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, dict]:
        if self.pending is None:
            self.close()
            raise StopIteration
        b, event = self.pending.result()
        step = self.step
        self.step += 1
        self.pending = self.pool.submit(self._prepare, self.step) if self.step < self.stop else None
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)
            for v in b.values():
                v.record_stream(torch.cuda.current_stream(self.device))
        return step, b

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def compile_model(model: torch.nn.Module, cache_dir: str | os.PathLike | None) -> torch.nn.Module:
    """torch.compile the model, with Inductor's cache under `cache_dir` (the node's disk, kept across resumes and
    restarts of the service, so a resumed run skips most of the compilation)."""
    if cache_dir is not None:
        path = pathlib.Path(cache_dir) / "inductor"
        path.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault(INDUCTOR_CACHE_ENV, str(path))
    return torch.compile(model)
