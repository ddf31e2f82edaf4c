"""`relaytrain validate FILE...`: check blueprints before anything runs (exit 0 all valid, 2 otherwise).

Every problem of every file is printed, one `FILE:LINE: path.to.field: message` per line. A blueprint is
checked as deployed (what synth and launch refuse, e.g. a `file:` tracking URI, is refused here too) unless
`--local` asks only for what `relaytrain run --local` needs.
"""

from __future__ import annotations

import json
import sys

from relaytrain.blueprint import BlueprintError, catalog_files, load
from relaytrain.blueprint.validate import advice


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*", help="blueprint files (default: every file in blueprints/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: valid files and problems")
    parser.add_argument("--local", action="store_true",
                        help="check only what `relaytrain run --local` needs (default: as deployed)")


def run(args) -> int:
    files = args.files or catalog_files()
    problems, valid = [], []
    for path in files:
        try:
            bp = load(path, deployed=not args.local)
        except BlueprintError as exc:
            problems += exc.problems
            continue
        warnings = [{"field": ".".join(field), "message": message} for field, message in advice(bp)]
        valid.append({"file": str(path), "name": bp.name, "topology": bp.topology, "cloud": bp.cloud,
                      "region": bp.region, "warnings": warnings})
        if not args.json:
            print(f"{path}: ok ({bp.name}: {bp.topology} on {bp.cloud} {bp.region})")
            for w in warnings:
                print(f"{path}: warning: {w['field']}: {w['message']}")
    if args.json:
        print(json.dumps({"valid": valid, "problems": problems}, sort_keys=True))
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"relaytrain validate: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    return 0
