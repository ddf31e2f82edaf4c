"""Google Cloud Functions (2nd gen) HTTP entry point, served by functions-framework.

Target `relaytrain_http` (the deployed source's `main.py` re-exports it). The body is the same
JSON event as on Lambda; the answer is the same JSON result. HTTP status: 200 for a result
(including `lost_race`), 400 for `{"error": ...}` (a bad event: do not retry), 500 when the op
failed unexpectedly (Workflows' retry policy applies).

The function's configuration comes from its environment, set by the deployment:
RELAYTRAIN_TIMEOUT_S (the function's timeout; the deadline is request start + timeout - margin),
RELAYTRAIN_MARGIN_S (default 5), RELAYTRAIN_VCPU and RELAYTRAIN_MEMORY_GIB (what a second of
this instance costs), RELAYTRAIN_BILLING (`request` or `instance`, default request).
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback

from relaytrain_runtime.contract.events import BadEvent, error
from relaytrain_runtime.handlers.ops import run_op
from relaytrain_runtime.pricing import gcf_cost_per_second

DEFAULT_TIMEOUT_S = 3600.0  # the 2nd-gen HTTP maximum; set RELAYTRAIN_TIMEOUT_S to the real one


def _env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """A finite number >= `minimum` from the environment variable `name` (the field this deployment set)."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadEvent(f"environment variable {name}={raw!r} must be a number") from None
    if not math.isfinite(value) or value < minimum:
        raise BadEvent(f"environment variable {name}={raw!r} must be a finite number >= {minimum:g}")
    return value


def settings() -> tuple[float, float, float]:
    """(seconds an invocation may use, cost per second, memory bytes) of this function, from its environment."""
    timeout = _env_float("RELAYTRAIN_TIMEOUT_S", DEFAULT_TIMEOUT_S, minimum=1.0)
    timeout -= _env_float("RELAYTRAIN_MARGIN_S", 5.0)
    vcpu = _env_float("RELAYTRAIN_VCPU", 1.0)
    memory = _env_float("RELAYTRAIN_MEMORY_GIB", 2.0)
    billing = os.environ.get("RELAYTRAIN_BILLING", "request")
    try:
        cost = gcf_cost_per_second(vcpu, memory, billing)
    except ValueError as exc:
        raise BadEvent(f"environment variable RELAYTRAIN_BILLING: {exc}") from None
    return timeout, cost, memory * 2**30


def handle(event, started: float) -> tuple[dict, int]:
    """The JSON result and HTTP status for one event that arrived at `started`."""
    try:
        budget, cost, memory_bytes = settings()
    except BadEvent as exc:
        return error(exc, None), 500  # a deployment mistake, not the caller's
    result = run_op(event, started + budget, cost, memory_bytes=memory_bytes)
    return result, 400 if "error" in result else 200


def relaytrain_http(request):
    started = time.time()
    event = request.get_json(silent=True)
    if event is None:
        result, status = error(BadEvent("request body must be a JSON object with a 'store' URL "
                                        "(Content-Type: application/json)"), None), 400
    else:
        try:
            result, status = handle(event, started)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback, answered as JSON 500
            traceback.print_exc()
            result, status = error(exc, event.get("op") if isinstance(event, dict) else None), 500
    return json.dumps(result), status, {"Content-Type": "application/json"}
