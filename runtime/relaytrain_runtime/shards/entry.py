"""Handler entry points of the function-shards topology (event contract in docs/SHARDS.md).

    shard_op({"op": "shard", "store": URL, "round": r, "shard": k, "shards": K}, deadline) -> dict
    reduce_op({"op": "reduce", "store": URL, "round": r, ["piece": j | "pieces": [j, ...]], ["baton": digest]}, deadline) -> dict
    status_op({"op": "status", "store": URL}, deadline) -> dict

Optional in every event: "spec" (a RunSpec dict) and "functions" (the blueprint's functions:
section) initialise the run on first use (identical: fine; different: error), and
"cost_per_second" (USD) accrues this invocation's cost into the run; shard events take
"cache_dir" (or env RELAYTRAIN_CACHE_DIR) to cache dataset shards locally. `deadline` is an absolute
time.time() value (or None). Bad events raise RelayError with one clear line; the handlers turn
it into {"error": {...}}.
"""

from __future__ import annotations

import os

from relaytrain_runtime import RelayError


class BadEvent(RelayError):
    pass


def _int(event: dict, name: str, *, required: bool = True, minimum: int = 0) -> int | None:
    value = event.get(name)
    if value is None:
        if required:
            raise BadEvent(f"{event.get('op', 'shards')} event: field {name!r} is missing (an integer >= {minimum})")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadEvent(f"{event.get('op', 'shards')} event: field {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _open(event: dict):
    from relaytrain_runtime.shards.rounds import open_run

    if not isinstance(event, dict):
        raise BadEvent(f"event must be a JSON object, got {type(event).__name__}")
    store = event.get("store")
    if not isinstance(store, str) or not store:
        raise BadEvent(f"{event.get('op', 'shards')} event: field 'store' is missing (a store URL: file://, s3:// or gs://)")
    for name in ("spec", "functions"):
        if event.get(name) is not None and not isinstance(event[name], dict):
            raise BadEvent(f"{event.get('op', 'shards')} event: field {name!r} must be an object")
    return open_run(store, event.get("spec"), event.get("functions"))


def _cost(event: dict) -> float:
    value = event.get("cost_per_second", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadEvent(f"{event.get('op', 'shards')} event: field 'cost_per_second' must be a number >= 0, got {value!r}")
    return float(value)


def shard_op(event: dict, deadline: float | None = None) -> dict:
    """One shard of one round. Returns {"status": "ok"|"stale"|"done", "round", "shard", "baton",
    "current_round", "step", "done", "loss", ...}."""
    from relaytrain_runtime.shards.rounds import run_shard

    run = _open(event)
    rnd, shard = _int(event, "round"), _int(event, "shard")
    shards = _int(event, "shards", required=False, minimum=1)
    if shards is not None and shards != run.config.shards:
        raise BadEvent(f"shard event: shards={shards} but the run in {run.store.url} has {run.config.shards} "
                       "(functions.shards is fixed when the run starts)")
    cache_dir = event.get("cache_dir") or os.environ.get("RELAYTRAIN_CACHE_DIR") or None
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise BadEvent(f"shard event: field 'cache_dir' must be a path, got {cache_dir!r}")
    return run_shard(run, rnd, shard, deadline=deadline, cost_per_second=_cost(event), cache_dir=cache_dir)


def reduce_op(event: dict, deadline: float | None = None) -> dict:
    """Reduce pieces of one round (default: all) and commit the round once every piece is reduced.
    Returns {"status": "committed"|"reduced"|"missing"|"stale"|"done"|"lost_race", "round", ...}."""
    from relaytrain_runtime.shards.rounds import reduce_round

    run = _open(event)
    rnd = _int(event, "round")
    pieces = event.get("pieces")
    if event.get("piece") is not None:
        pieces = [_int(event, "piece")]
    elif pieces is not None and (not isinstance(pieces, list) or not all(isinstance(j, int) and not isinstance(j, bool)
                                                                         for j in pieces)):
        raise BadEvent(f"reduce event: field 'pieces' must be a list of integers, got {pieces!r}")
    baton = event.get("baton")
    if baton is not None and (not isinstance(baton, str) or len(baton) != 64):
        raise BadEvent("reduce event: field 'baton' must be the 64-hex digest the shards returned")
    commit = event.get("commit", True)
    if not isinstance(commit, bool):
        raise BadEvent(f"reduce event: field 'commit' must be true or false, got {commit!r}")
    return reduce_round(run, rnd, pieces, baton=baton, commit=commit, cost_per_second=_cost(event))


def status_op(event: dict, deadline: float | None = None) -> dict:
    """Initialise the run if the event carries spec/functions (and build its dataset), then report
    {"current_round", "step", "done", "loss", "shards", "sync", "baton"}: where an orchestrator starts."""
    from relaytrain_runtime.shards.rounds import round_status

    return round_status(_open(event))
