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
import os
import time

from relaytrain_runtime import RelayError
from relaytrain_runtime.store import open_store

OPS: dict[str, str] = {
    "leg": "relaytrain_runtime.handlers.ops:leg_op",
    "preprocess": "relaytrain_runtime.preprocess:preprocess_op",
    "evaluate": "relaytrain_runtime.evaluate:evaluate_op",
    "shard": "relaytrain_runtime.shards.entry:shard_op",
    "reduce": "relaytrain_runtime.shards.entry:reduce_op",
    "status": "relaytrain_runtime.shards.entry:status_op",  # function-shards: where an orchestrator starts
}


class BadEvent(RelayError):
    """The event is not one this handler can serve."""


def error(exc: BaseException, op: str | None) -> dict:
    return {"error": {"type": type(exc).__name__, "message": str(exc), "op": op}}


def field(event: dict, name: str, kind: type | tuple, default=None, *, required: bool = False, minimum=None):
    """`event[name]` checked against `kind` (and `minimum`), or `default` when absent."""
    if name not in event or event[name] is None:
        if required:
            raise BadEvent(f"event field {name!r} is required")
        return default
    value = event[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BadEvent(f"event field {name!r} must be {names}, got {type(value).__name__} {value!r:.80}")
    if minimum is not None and value < minimum:
        raise BadEvent(f"event field {name!r} must be >= {minimum}, got {value!r}")
    return value


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


def run_op(event, deadline: float, cost_per_second: float = 0.0) -> dict:
    """Validate `event`, run its op before `deadline`, and return the op's JSON result."""
    op = None
    try:
        if not isinstance(event, dict):
            raise BadEvent(f"event must be a JSON object with a 'store' URL, got {type(event).__name__}")
        op = field(event, "op", str, "leg")
        open_store(field(event, "store", str, required=True))  # a malformed URL is a bad event
        if deadline <= time.time():
            raise BadEvent("no time left for this invocation (deadline already passed); raise the timeout")
        fn = resolve(op)
        return fn({**event, "op": op, "cost_per_second": float(cost_per_second)}, deadline)
    except RelayError as exc:
        return error(exc, op)


def leg_op(event: dict, deadline: float) -> dict:
    """One time-boxed leg: `{"store", "max_steps"?, "spec"?, "cache_dir"?}` -> the leg status.

    `cache_dir` (or env RELAYTRAIN_CACHE_DIR, e.g. an EFS mount) caches dataset shards."""
    kwargs = dict(
        deadline=deadline,
        max_steps=field(event, "max_steps", int, minimum=1),
        spec=field(event, "spec", dict),
        cost_per_second=field(event, "cost_per_second", (int, float), 0.0, minimum=0),
        cache_dir=field(event, "cache_dir", str) or os.environ.get("RELAYTRAIN_CACHE_DIR") or None,
    )
    from relaytrain_runtime.leg import run_leg  # torch: only once the event is known to be good

    return run_leg(event["store"], **kwargs)
