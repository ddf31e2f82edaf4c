"""Handler entry points of the function-shards topology (event contract in docs/SHARDS.md).

    shard_op({"op": "shard", "store": URL, "round": r, "shard": k, "shards": K}, deadline) -> dict
    reduce_op({"op": "reduce", "store": URL, "round": r, ["piece": j | "pieces": [j, ...]], ["baton": digest]},
              deadline) -> dict
    status_op({"op": "status", "store": URL}, deadline) -> dict

Optional in every event: "spec" (a RunSpec dict) and "functions" (the blueprint's functions:
section) initialise the run on first use (identical: fine; different: error), and
"cost_per_second" (USD) accrues this invocation's cost into the run; shard events take
"cache_dir" (or env RELAYTRAIN_CACHE_DIR) to cache dataset shards locally. `deadline` is an absolute
time.time() value (or None). Bad events raise RelayError with one clear line; the handlers turn
it into {"error": {...}}.
"""

from __future__ import annotations

from relaytrain_runtime.contract.events import BadEvent, check_value, field, settings_field
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store.confine import worker_cache_dir


def _open(event: dict):
    from relaytrain_runtime.shards.config import ShardsConfig
    from relaytrain_runtime.shards.rounds import open_run

    store = field(event, "store", str, required=True)
    return open_run(store, settings_field(event, "spec", RunSpec), settings_field(event, "functions", ShardsConfig))


def _cost(event: dict) -> float:
    return float(field(event, "cost_per_second", (int, float), 0.0, minimum=0))


def _event(event) -> dict:
    if not isinstance(event, dict):
        raise BadEvent(f"event must be a JSON object, got {type(event).__name__}")
    return event


def shard_op(event: dict, deadline: float | None = None) -> dict:
    """One shard of one round. Returns {"status": "ok"|"stale"|"done", "round", "shard", "baton",
    "current_round", "step", "done", "loss", ...}."""
    from relaytrain_runtime.shards.rounds import run_shard

    event = _event(event)
    rnd = field(event, "round", int, required=True, minimum=0)
    shard = field(event, "shard", int, required=True, minimum=0)
    shards = field(event, "shards", int, minimum=1)
    cache_dir = worker_cache_dir(field(event, "cache_dir", str))
    run = _open(event)
    if shards is not None and shards != run.config.shards:
        raise BadEvent(f"shard event: shards={shards} but the run in {run.store.url} has {run.config.shards} "
                       "(functions.shards is fixed when the run starts)")
    return run_shard(run, rnd, shard, deadline=deadline, cost_per_second=_cost(event), cache_dir=cache_dir)


def reduce_op(event: dict, deadline: float | None = None) -> dict:
    """Reduce pieces of one round (default: all) and commit the round once every piece is reduced.
    Returns {"status": "committed"|"reduced"|"missing"|"stale"|"done"|"lost_race", "round", ...}."""
    from relaytrain_runtime.shards.rounds import reduce_round

    event = _event(event)
    rnd = field(event, "round", int, required=True, minimum=0)
    pieces = field(event, "pieces", list)
    if event.get("piece") is not None:
        pieces = [field(event, "piece", int, minimum=0)]
    elif pieces is not None:
        pieces = [check_value(f"pieces[{i}]", j, (int,), minimum=0) for i, j in enumerate(pieces)]
    baton = field(event, "baton", str)
    if baton is not None and len(baton) != 64:
        raise BadEvent("event field 'baton' must be the 64-hex digest the shards returned")
    commit = field(event, "commit", bool, True)
    run = _open(event)
    return reduce_round(run, rnd, pieces, baton=baton, commit=commit, cost_per_second=_cost(event))


def status_op(event: dict, deadline: float | None = None) -> dict:
    """Initialise the run if the event carries spec/functions (and build its dataset), then report
    {"current_round", "step", "done", "loss", "shards", "sync", "baton"}: where an orchestrator starts."""
    from relaytrain_runtime.shards.rounds import round_status

    return round_status(_open(_event(event)))
