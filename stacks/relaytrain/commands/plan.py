"""`relaytrain plan FILE [--json] [--hours H] [--calibrate]` and `relaytrain plan --compare FILE...`.

Time and cost of a blueprint before anything is deployed. `--compare` plans the first file's
training job on every listed topology and writes a bar chart of time and cost.
"""

from __future__ import annotations

import json
import pathlib
import sys

from relaytrain.blueprint import BlueprintError, load_all
from relaytrain.plan import plan
from relaytrain.plan.compare import verdict, worker_count
from relaytrain.plan.devices import calibration_path, load_devices
from relaytrain.plan.report import format_compare, format_plan, write_chart
from relaytrain_runtime import RelayError


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", help="blueprint file(s)")
    parser.add_argument("--json", action="store_true", help="print the plan(s) as JSON")
    parser.add_argument("--compare", action="store_true",
                        help="plan the first file's training job on every file's topology, side by side")
    parser.add_argument("--chart", default="plan-compare.png", help="--compare: bar chart path (default: %(default)s)")
    parser.add_argument("--hours", type=float, help="price this many hours instead of the FLOP-based estimate")
    parser.add_argument("--train-tokens", type=int, metavar="N",
                        help="the train split's token count, for the epochs of a dataset the planner does not read "
                             "(a remote one; `relaytrain data inspect URL` shows it)")
    parser.add_argument("--calibrate", nargs="?", const=True, default=False, metavar="NODE_STATUS",
                        help="measure real training steps on this machine first and save the per-vCPU throughput; "
                             "given a node's status JSON, save the MFU it measured for its GPU instead")
    parser.add_argument("--calibration", type=pathlib.Path, help=f"calibration file (default: {calibration_path()})")


def run(args) -> int:
    try:
        blueprints = load_all(args.files)  # every file checked before anything runs or is written
    except BlueprintError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    if args.hours is not None and not args.hours > 0:
        raise RelayError(f"--hours must be > 0, got {args.hours:g}")
    if args.train_tokens is not None and args.train_tokens < 1:
        raise RelayError(f"--train-tokens must be >= 1, got {args.train_tokens}")
    if isinstance(args.calibrate, str):
        from relaytrain.plan.devices import calibrate_from_node_status

        calibrate_from_node_status(pathlib.Path(args.calibrate), args.calibration or calibration_path())
    elif args.calibrate:
        from relaytrain.localrun.calibrate import calibrate

        calibrate(blueprints[0], args.calibration or calibration_path())
    devices = load_devices(args.calibration)
    if not args.compare:
        plans = [plan(bp, devices, args.hours, args.train_tokens) for bp in blueprints]
        if args.json:
            print(json.dumps([p.to_dict() for p in plans] if len(plans) > 1 else plans[0].to_dict(), indent=1))
        else:
            print("\n\n".join(format_plan(p) for p in plans))
        return 0
    job = blueprints[0].training
    plans, results = [], []
    for bp in blueprints:
        same = bp.model_copy(update={"training": job, "budget_usd": None})
        try:
            _check_fits(same)
            p = plan(same, devices, args.hours)
            plans.append(p)
            results.append(p)
        except RelayError as exc:
            results.append(str(exc))
    label = (f"{job.preset}, {job.steps:,} steps x {job.batch_size} x {job.seq_len or 'max'} tokens "
             f"(from {args.files[0]})")
    if args.json:
        print(json.dumps({"job": label, "plans": [r.to_dict() if not isinstance(r, str) else {"error": r}
                                                  for r in results]}, indent=1))
    else:
        print(format_compare(results, [bp.name for bp in blueprints], label))
        planned = [(r, worker_count(bp)) for r, bp in zip(results, blueprints, strict=True) if not isinstance(r, str)]
        print("\n".join(verdict([r for r, _ in planned], [n for _, n in planned])))
    if plans:
        print(f"chart: {write_chart(plans, pathlib.Path(args.chart))}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _check_fits(bp) -> None:
    """The job moved onto another topology must still fit its worker's memory."""
    from relaytrain.blueprint.validate import check

    problems = [msg for _path, msg in check(bp)]
    if problems:
        raise RelayError(problems[0])
