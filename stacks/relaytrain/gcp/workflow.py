"""The Cloud Workflows definition that drives function-shards rounds, generated from data.

The protocol is the shards runtime's (`relaytrain_runtime.shards.entry`), the same one the local
runner (`relaytrain.localrun.shards`) follows. One round:

1. every shard in parallel: `{"op": "shard", "store", "round", "shard", "shards", "spec",
   "functions"}` (OIDC-authenticated; `spec` and `functions` initialise the run on first use,
   identical ones are no-ops). A shard answers `ok`, or `stale` / `done` with the run's
   `current_round` when that round was already committed (a resumed or raced orchestrator);
2. unless a shard said `stale`/`done`: `{"op": "reduce", "store", "round"}`, which answers
   `committed` (with `done`, `cost_usd`, `next_round`), `stale`/`done`/`lost_race` (with
   `current_round`), or `missing` (a shard object is gone: the round runs again);
3. return on `done`, or when the accrued `cost_usd` reaches the budget; else continue at the
   run's `current_round`. A safety stop raises after `max_rounds` passes.

Transient HTTP errors (429, 500, 502, 503, 504, connection failures, timeouts) are retried with
exponential backoff; a bad event (HTTP 400 with `{"error": ...}`) stops the execution with that
error. The definition is a plain dict serialised with PyYAML (never string-pasted); the tests run
the same dict with a local interpreter against the real handler.
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
            {"condition": '${"ConnectionError" in e.tags}', "return": True},  # connection broken
            {"condition": '${"ConnectionFailedError" in e.tags}', "return": True},  # never established
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
    spec: dict | None = None  # the blueprint's training: section (initialises the run on first use)
    functions: dict | None = None  # the blueprint's functions: section


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


def _field(var: str, key: str, default: str) -> str:
    """The expression for `var[key]`, or `default` when the answer has no such key."""
    return f'default(map.get({var}, "{key}"), {default})'


def definition(plan: RoundPlan) -> dict:
    """The workflow as data: `main(args)`; args may override `store`, `round` and `max_rounds`."""
    if plan.call_timeout_s > MAX_CALL_TIMEOUT_S:
        raise ValueError(f"call_timeout_s {plan.call_timeout_s} exceeds the Workflows HTTP limit {MAX_CALL_TIMEOUT_S}")
    shard_body = {"op": "shard", "store": "${store}", "round": "${round}", "shard": "${shard}", "shards": "${shards}"}
    if plan.spec is not None:
        shard_body["spec"] = "${spec}"
    if plan.functions is not None:
        shard_body["functions"] = "${functions}"
    init = [
        {"store": f'${{default(map.get(args, "store"), "{plan.store_url}")}}'},
        {"round": '${default(map.get(args, "round"), 0)}'},
        {"max_rounds": f'${{default(map.get(args, "max_rounds"), {plan.max_rounds})}}'},
        {"passes": 0},
        {"shards": plan.shards},
    ]
    init += [{"spec": plan.spec}] if plan.spec is not None else []
    init += [{"functions": plan.functions}] if plan.functions is not None else []
    init += [{"budget_usd": plan.budget_usd}] if plan.budget_usd is not None else []
    decide = [{"condition": f'${{{_field("outcome", "done", "false")}}}',
               "return": {"status": "done", "round": "${round}", "result": "${outcome}"}}]
    if plan.budget_usd is not None:
        decide.append({"condition": f'${{{_field("outcome", "cost_usd", "0")} >= budget_usd}}',
                       "return": {"status": "budget_exhausted", "round": "${round}", "result": "${outcome}"}})
    steps = [
        {"init": {"assign": init}},
        {"new_round": {"assign": [{"skipped": None}]}},
        {"run_shards": {"parallel": {"shared": ["skipped"], "for": {
            "value": "shard", "range": [0, plan.shards - 1], "steps": [
                {"call_shard": _post(shard_body, plan, "shard_result")},
                {"check_shard": {"switch": [{"condition": '${shard_result.body.status != "ok"}',
                                             "steps": [{"mark_skipped": {"assign": [
                                                 {"skipped": "${shard_result.body}"}]}}]}]}},
            ]}}}},
        {"after_shards": {"switch": [{"condition": "${skipped != null}", "next": "take_skipped"}]}},
        {"reduce": _post({"op": "reduce", "store": "${store}", "round": "${round}"}, plan, "reduce_result")},
        {"take_reduced": {"assign": [{"outcome": "${reduce_result.body}"}], "next": "decide"}},
        {"take_skipped": {"assign": [{"outcome": "${skipped}"}]}},
        {"decide": {"switch": decide}},
        {"advance": {"assign": [{"round": f'${{{_field("outcome", "current_round", "round")}}}'},
                                {"passes": "${passes + 1}"}]}},
        {"guard": {"switch": [{"condition": "${passes >= max_rounds}", "raise": {
            "code": "max_rounds", "message": '${"no done after " + string(passes) + " rounds"}'}}]}},
        {"loop": {"next": "new_round"}},
    ]
    return {"main": {"params": ["args"], "steps": steps}, "retry_transient": RETRY_TRANSIENT}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # repeated blocks (the retry policy) are written out, no &anchors
        return True


def to_yaml(workflow: dict) -> str:
    return yaml.dump(workflow, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
