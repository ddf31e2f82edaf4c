"""AWS Lambda entry point (the container image's CMD): `relaytrain_runtime.handlers.aws_lambda.handler`.

The leg's deadline is Lambda's own clock, `context.get_remaining_time_in_millis()`, less a
margin for returning (RELAYTRAIN_MARGIN_S, default 5 s; the leg itself reserves its measured
save time). Cost accrues at the function's configured memory times the Lambda GB-s price of
this architecture. The result is what a Step Functions Choice state reads: `done`, `status`,
`step`, `loss`, `cost_usd`, ... or `{"error": {...}}` (see `ops.run_op`).
"""

from __future__ import annotations

import math
import os
import platform
import time

from relaytrain_runtime.contract.events import BadEvent, error
from relaytrain_runtime.handlers.ops import run_op
from relaytrain_runtime.pricing import lambda_cost_per_second


def margin_s() -> float:
    raw = os.environ.get("RELAYTRAIN_MARGIN_S", "5")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadEvent(f"environment variable RELAYTRAIN_MARGIN_S={raw!r} must be a finite number >= 0")
    return value


def handler(event, context):
    try:
        remaining_s = context.get_remaining_time_in_millis() / 1000.0
        deadline = time.time() + remaining_s - margin_s()
        memory_mb = int(context.memory_limit_in_mb)
        if memory_mb <= 0:
            raise BadEvent(f"the function's memory size (MemorySize) must be > 0 MB, got {memory_mb}")
    except BadEvent as exc:
        return error(exc, None)  # the deployment's mistake, named as the deployment set it
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    return run_op(event, deadline, lambda_cost_per_second(memory_mb, arch), memory_bytes=memory_mb * 2**20)
