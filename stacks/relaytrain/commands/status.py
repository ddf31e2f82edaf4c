"""`relaytrain status FILE [--run NAME]`: a deployed run's baton (step, loss, legs, cost, checkpoint)."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("blueprint", help="the blueprint file the stack was deployed from")
    parser.add_argument("--run", help="run name (default: the blueprint's name)")
    parser.add_argument("--region", help="AWS region (default: the blueprint's region, else us-east-1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from relaytrain.aws.deployed import executions, run_state, run_store, stack_outputs
    from relaytrain.blueprint import load

    blueprint = load(args.blueprint)
    outputs = stack_outputs(blueprint, args.region)
    state = run_state(run_store(outputs, args.run or blueprint.name))
    state["executions"] = executions(blueprint, outputs, args.region)
    if args.json:
        print(json.dumps(state, sort_keys=True))
        return 0
    loss = "-" if state["loss"] is None else f"{state['loss']:.4f}"
    print(f"run      {state['store']}  ({state['preset']}, {'done' if state['done'] else 'in progress'})")
    print(f"step     {state['step']}/{state['steps']}  loss {loss}  tokens {state['tokens']}")
    print(f"legs     {state['legs']}  cost ${state['cost_usd']:.4f}  checkpoints {state['checkpoints']}")
    ckpt = state["latest_checkpoint"]
    print(f"latest   {ckpt['manifest']} (weights {ckpt['weights_sha256'][:16]}...)" if ckpt else "latest   none yet")
    for e in state["executions"]:
        print(f"exec     {e['name']}  {e['status']}  {e['started']}")
    return 0
