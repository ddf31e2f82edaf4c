"""`relaytrain launch FILE [--run NAME]`: start a run on a deployed AWS stack (lambda-steps, hybrid)."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("blueprint", help="the blueprint file the stack was deployed from")
    parser.add_argument("--run", help="run name: its store is s3://BUCKET/runs/RUN (default: the blueprint's name; "
                                      "launching an existing run resumes it)")
    parser.add_argument("--region", help="AWS region (default: the blueprint's region, else us-east-1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from relaytrain.aws.deployed import start_run
    from relaytrain.blueprint import load
    from relaytrain.commands import aws_only

    blueprint = load(args.blueprint, deployed=True)
    aws_only(blueprint, "launch", "relaytrain status --store $(pulumi stack output store_url)")
    started = start_run(blueprint, run=args.run, region=args.region)
    if args.json:
        print(json.dumps(started, sort_keys=True))
    else:
        print(f"started {started['execution']}")
        print(f"store   {started['store']}")
        print(f"watch   relaytrain status {args.blueprint} --run {started['run']}")
    return 0
