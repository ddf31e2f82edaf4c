"""`relaytrain status [FILE] [--store URL] [--watch]`: a run's step, epoch, tokens, loss, validation loss,
tokens/s, ETA, cost so far and projected cost against the blueprint's budget.

`--store URL` reads any run's store (file://, s3://, gs://); `FILE` alone finds the store of a
deployed AWS stack (and lists its state machine's executions). GCP stacks are read by store URL
(`pulumi stack output store_url`). `--watch` refreshes in place until the run is done (or
`--iterations` refreshes); with `--json`, one JSON object per line per refresh.
"""

from __future__ import annotations

import json
import sys
import time

from relaytrain_runtime import RelayError

CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


def add_target_arguments(parser, blueprint_help: str, budget_help: str) -> None:
    """The options `target` reads (status and report): BLUEPRINT, --store, --run, --region, --budget."""
    parser.add_argument("blueprint", nargs="?", help=blueprint_help)
    parser.add_argument("--store", help="store URL of the run (file://, s3://, gs://): read it directly")
    parser.add_argument("--run", help="run name on a deployed AWS stack (default: the blueprint's name)")
    parser.add_argument("--region", help="AWS region (default: the blueprint's region, else us-east-1)")
    parser.add_argument("--budget", type=float, help=budget_help)


def add_arguments(parser) -> None:
    add_target_arguments(parser, "the blueprint file the stack was deployed from (with --store: only its "
                                 "budget_usd is used)", "budget in USD to project against (default: the blueprint's)")
    parser.add_argument("--watch", action="store_true", help="refresh in place until the run is done")
    parser.add_argument("--interval", type=float, default=30.0, help="--watch: seconds between refreshes (%(default)s)")
    parser.add_argument("--iterations", type=int, help="--watch: stop after this many refreshes")
    parser.add_argument("--json", action="store_true", help="print one JSON object (per refresh with --watch)")


def target(args, verb: str = "status"):
    """(store URL, blueprint or None, executions callable or None, budget) from the arguments (of `verb`); the
    budget is --budget, else the blueprint's budget_usd, else None."""
    from relaytrain.commands import aws_only

    if args.budget is not None and not args.budget > 0:
        raise RelayError(f"--budget must be > 0 (USD), got {args.budget:g}")
    blueprint = None
    if args.blueprint:
        from relaytrain.blueprint import load

        blueprint = load(args.blueprint)
    budget = args.budget if args.budget is not None else (blueprint.budget_usd if blueprint else None)
    if args.store:
        return args.store, blueprint, None, budget
    if blueprint is None:
        raise RelayError(f"relaytrain {verb} needs a blueprint FILE (deployed AWS stack) or --store URL")
    aws_only(blueprint, verb, f"relaytrain {verb} --store $(pulumi stack output store_url)")
    from relaytrain.aws.deployed import executions, run_store, stack_outputs

    outputs = stack_outputs(blueprint, args.region)
    return (run_store(outputs, args.run or blueprint.name), blueprint,
            lambda: executions(blueprint, outputs, args.region), budget)


def snapshot(store_url: str, budget: float | None, list_executions=None) -> dict:
    from relaytrain_runtime.report.status import run_status
    from relaytrain_runtime.report.view import load_run

    state = run_status(load_run(store_url), budget)
    if list_executions is not None:
        state["executions"] = list_executions()
    return state


def render(state: dict) -> str:
    from relaytrain_runtime.report.status import format_status

    lines = [format_status(state)] + [f"exec     {e['name']}  {e['status']}  {e['started']}"
                                      for e in state.get("executions", [])]
    return "\n".join(lines)


def run(args) -> int:
    if args.iterations is not None and args.iterations < 1:
        raise RelayError(f"--iterations must be >= 1, got {args.iterations}")
    if not args.interval > 0:
        raise RelayError(f"--interval must be > 0 seconds, got {args.interval:g}")
    store_url, _blueprint, list_executions, budget = target(args)
    count = 0
    while True:
        state = snapshot(store_url, budget, list_executions)
        count += 1
        if args.json:
            print(json.dumps(state, sort_keys=True), flush=True)
        else:
            clear = CLEAR if args.watch and sys.stdout.isatty() else ""
            print(clear + render(state) + ("\n" if args.watch and not clear else ""), flush=True)
        if not args.watch or state["done"] or (args.iterations is not None and count >= args.iterations):
            return 0
        time.sleep(args.interval)
