"""The Cloud Workflows definition that drives function-shards rounds, generated from data.

One round: every shard in parallel (`{"op": "shard", "store", "round", "shard", "shards"}`,
authenticated OIDC calls), then `{"op": "reduce", "store", "round", "shards"}`, then a check of
`done` and of the accrued `cost_usd` against the budget; then the next round. Transient HTTP
errors (429, 500, 502, 503, 504, connection failures, timeouts) are retried with exponential
backoff; a bad event (HTTP 400 with `{"error": ...}`) stops the execution with that error.

The definition is a plain dict serialised with PyYAML (never string-pasted); `tests/` runs the
same dict with a local interpreter against the real handler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import yaml

# Workflows caps one HTTP call at 1,800 s: a handler must answer before that.
MAX_CALL_TIMEOUT_S = 1800
# The handler answers 400 for a bad event (retrying cannot help) and 500 for an unexpected
# failure (worth retrying); the platform adds 429 and 502-504 while instances scale.
TRANSIENT_CODES = [429, 500, 502, 503, 504]
RETRY = {
    "predicate": "${retry_transient}",
    "max_retries": 5,
    "backoff": {"initial_delay": 2, "max_delay": 60, "multiplier": 2},
}
RETRY_TRANSIENT = {  # the retry predicate, a subworkflow: true for transient HTTP codes and network errors
    "params": ["e"],
    "steps": [
        {"check": {"switch": [
            {"condition": '${"ConnectionError" in e.tags}', "return": True},
            {"condition": '${"TimeoutError" in e.tags}', "return": True},
            {"condition": f'${{default(map.get(e, "code"), 0) in {TRANSIENT_CODES}}}', "return": True},
        ]}},
        {"permanent": {"return": False}},
    ],
}


@dataclass(frozen=True)
class RoundPlan:
    """What the workflow needs to know; everything else stays in the store."""

    function_url: str
    store_url: str
    shards: int
    call_timeout_s: int
    max_rounds: int
    budget_usd: float | None = None


def max_rounds(steps: int, sync: str, local_steps: int) -> int:
    """A safety stop: twice the rounds the run needs, so a stuck run cannot loop forever."""
    per_round = local_steps if sync == "diloco" else 1
    return 2 * math.ceil(steps / max(per_round, 1)) + 1


def _post(body: dict, plan: RoundPlan, result: str) -> dict:
    return {
        "try": {
            "call": "http.post",
            "args": {"url": plan.function_url, "auth": {"type": "OIDC"}, "timeout": plan.call_timeout_s, "body": body},
            "result": result,
        },
        "retry": RETRY,
    }


def _raise_on_error(result: str) -> dict:
    return {"switch": [{"condition": f'${{"error" in {result}.body}}', "raise": f"${{{result}.body.error}}"}]}


def definition(plan: RoundPlan) -> dict:
    """The workflow as data: `main(args)`; args may override `store`, `round` and `max_rounds`."""
    if plan.call_timeout_s > MAX_CALL_TIMEOUT_S:
        raise ValueError(f"call_timeout_s {plan.call_timeout_s} exceeds the Workflows HTTP limit {MAX_CALL_TIMEOUT_S}")
    shard_body = {"op": "shard", "store": "${store}", "round": "${round}", "shard": "${shard}", "shards": "${shards}"}
    reduce_body = {"op": "reduce", "store": "${store}", "round": "${round}", "shards": "${shards}"}
    steps = [
        {"init": {"assign": [
            {"store": f'${{default(map.get(args, "store"), "{plan.store_url}")}}'},
            {"round": '${default(map.get(args, "round"), 0)}'},
            {"max_rounds": f'${{default(map.get(args, "max_rounds"), {plan.max_rounds})}}'},
            {"shards": plan.shards},
        ] + ([{"budget_usd": plan.budget_usd}] if plan.budget_usd is not None else [])}},
        {"run_shards": {"parallel": {"for": {"value": "shard", "range": [0, plan.shards - 1], "steps": [
            {"call_shard": _post(shard_body, plan, "shard_result")},
            {"check_shard": _raise_on_error("shard_result")},
        ]}}}},
        {"reduce": _post(reduce_body, plan, "reduce_result")},
        {"check_reduce": _raise_on_error("reduce_result")},
        {"decide": {"switch": [
            {"condition": "${reduce_result.body.done}",
             "return": {"status": "done", "round": "${round}", "result": "${reduce_result.body}"}},
        ] + ([{"condition": "${reduce_result.body.cost_usd >= budget_usd}",
               "return": {"status": "budget_exhausted", "round": "${round}", "result": "${reduce_result.body}"}}]
             if plan.budget_usd is not None else []) + [
            {"condition": "${round + 1 >= max_rounds}",
             "raise": {"code": "max_rounds", "message": "${\"no done after \" + string(max_rounds) + \" rounds\"}"}},
        ]}},
        {"next_round": {"assign": [{"round": "${round + 1}"}], "next": "run_shards"}},
    ]
    return {"main": {"params": ["args"], "steps": steps}, "retry_transient": RETRY_TRANSIENT}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # repeated blocks (the retry policy) are written out, no &anchors
        return True


def to_yaml(workflow: dict) -> str:
    return yaml.dump(workflow, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
