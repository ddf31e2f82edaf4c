"""`relaytrain validate FILE...`: check blueprints before anything runs (exit 0 all valid, 2 otherwise).

Every problem of every file is printed, one `FILE:LINE: path.to.field: message` per line.
"""

from __future__ import annotations

import sys

from relaytrain.blueprint import BlueprintError, catalog_files, load
from relaytrain.blueprint.validate import advice


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*", help="blueprint files (default: every file in blueprints/)")


def run(args) -> int:
    files = args.files or catalog_files()
    problems = []
    for path in files:
        try:
            bp = load(path)
        except BlueprintError as exc:
            problems += exc.problems
            continue
        where = f"{bp.cloud} {bp.region}"
        print(f"{path}: ok ({bp.name}: {bp.topology} on {where})")
        for field, message in advice(bp):
            print(f"{path}: warning: {'.'.join(field)}: {message}")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"relaytrain validate: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    return 0
