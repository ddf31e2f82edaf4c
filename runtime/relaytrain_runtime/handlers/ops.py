"""The op registry: op name -> "module:function", each `fn(event, deadline) -> dict`.

`deadline` is an absolute `time.time()` by which the op must have returned, already less the
handler's safety margin. Handlers put the worker's price into the event as `cost_per_second`
(their own number wins over the caller's), so every op accrues cost the same way.

`run_op` is the one place that validates an event and turns failures into results:
- a bad event, or any `RelayError` (bad spec, missing bucket, lost store access): returned as
  `{"error": {"type", "message", "op"}}`; retrying the same event cannot help, so callers route
  it to a failure state instead of a retry (no crash loop);
- any other exception propagates: on Lambda it becomes the runtime's error document and the
  state machine's Retry (with backoff and a bounded attempt count) applies; on Cloud Functions
  it becomes HTTP 500, which Workflows retries.
"""

from __future__ import annotations

import importlib
import math
import time

from relaytrain_runtime import RelayError
from relaytrain_runtime.contract.events import BadEvent, check_value, error, field, settings_field
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store
from relaytrain_runtime.store.confine import worker_cache_dir

OPS: dict[str, str] = {
    "leg": "relaytrain_runtime.handlers.ops:leg_op",
    "preprocess": "relaytrain_runtime.preprocess:preprocess_op",
    "evaluate": "relaytrain_runtime.evaluate:evaluate_op",
    "shard": "relaytrain_runtime.shards.entry:shard_op",
    "reduce": "relaytrain_runtime.shards.entry:reduce_op",
    "status": "relaytrain_runtime.shards.entry:status_op",  # function-shards: where an orchestrator starts
}


def resolve(op: str):
    """The function serving `op`; BadEvent when unknown or not installed in this image."""
    if op not in OPS:
        raise BadEvent(f"unknown op {op!r} (choose one of: {', '.join(OPS)})")
    module_name, fn_name = OPS[op].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise BadEvent(f"op {op!r} is not available in this runtime ({exc.name} is missing)") from None
        raise
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise BadEvent(f"op {op!r} is not available in this runtime ({OPS[op]} is missing)")
    return fn


def run_op(event, deadline: float, cost_per_second: float = 0.0, memory_bytes: float | None = None) -> dict:
    """Validate `event`, run its op before `deadline`, and return the op's JSON result. `memory_bytes` (the
    function's memory): a spec the event would persist must fit it (relaytrain_runtime.memory)."""
    op = None
    try:
        if not isinstance(event, dict):
            raise BadEvent(f"event must be a JSON object with a 'store' URL, got {type(event).__name__}")
        op = field(event, "op", str, "leg")
        open_store(field(event, "store", str, required=True))  # a malformed URL is a bad event
        if not isinstance(deadline, (int, float)) or not math.isfinite(deadline):
            raise BadEvent(f"the handler's deadline must be a finite time, got {deadline!r}; check its timeout setting")
        if deadline <= time.time():
            raise BadEvent("no time left for this invocation (deadline already passed); raise the timeout")
        check_value("cost_per_second", cost_per_second, (float, int), minimum=0, where="the handler's price")
        fn = resolve(op)
        if memory_bytes is not None and isinstance(event.get("spec"), dict):
            _refuse_what_cannot_fit(event, memory_bytes)
        return fn({**event, "op": op, "cost_per_second": float(cost_per_second)}, deadline)
    except RelayError as exc:
        return error(exc, op)


def _refuse_what_cannot_fit(event: dict, memory_bytes: float) -> None:
    """Before a spec in the event is persisted (a run initialised on first use), refuse one that cannot train in
    this worker's memory: the same estimate blueprint validation applies."""
    from relaytrain_runtime.memory import refuse_if_it_cannot_fit
    from relaytrain_runtime.spec import RunSpec

    functions = event.get("functions") if isinstance(event.get("functions"), dict) else {}
    shards = functions.get("shards") if isinstance(functions.get("shards"), int) else 1
    refuse_if_it_cannot_fit(RunSpec.from_dict(event["spec"]), memory_bytes, shards)


def leg_op(event: dict, deadline: float) -> dict:
    """One time-boxed leg: `{"store", "max_steps"?, "spec"?, "cache_dir"?}` -> the leg status.

    `cache_dir` (or env RELAYTRAIN_CACHE_DIR, e.g. an EFS mount) caches dataset shards."""
    kwargs = dict(
        deadline=deadline,
        max_steps=field(event, "max_steps", int, minimum=1),
        spec=settings_field(event, "spec", RunSpec),
        cost_per_second=field(event, "cost_per_second", (int, float), 0.0, minimum=0),
        cache_dir=worker_cache_dir(field(event, "cache_dir", str)),
    )
    from relaytrain_runtime.leg import run_leg  # torch: only once the event is known to be good

    return run_leg(event["store"], **kwargs)
