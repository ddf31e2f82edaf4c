"""`relaytrain synth [FILE...] --out DIR`: templates and resource plans for review, no cloud account.

AWS blueprints become CloudFormation templates (CDK, synthesized in one process); GCP blueprints
become resource plans (type, name and inputs of every resource, through Pulumi's mocks).
"""

from __future__ import annotations

import json
import pathlib

from relaytrain.blueprint import BlueprintError, catalog_files, load_all
from relaytrain.blueprint.source import parse, read_text


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="*", help="blueprint files (default: every file in blueprints/)")
    parser.add_argument("--out", default="review", help="output folder (default: review)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: the files written")


def run(args) -> int:
    files = args.files or catalog_files()
    # raises BlueprintError (all problems, exit 2) before anything is written; deployed: the workers run in the cloud
    blueprints = load_all(files, deployed=True)
    check_unique_names(files, blueprints)
    out = pathlib.Path(args.out)
    aws = [bp for bp in blueprints if bp.cloud == "aws"]
    gcp = [bp for bp in blueprints if bp.cloud == "gcp"]
    written: list[pathlib.Path] = []
    if aws:
        from relaytrain.aws.synth import synth_templates

        written += synth_templates(aws, out / "aws")
    if gcp:
        from relaytrain.gcp.review import write_plans

        written += write_plans(gcp, out / "gcp")
    if args.json:
        print(json.dumps({"out": str(out), "aws": len(aws), "gcp": len(gcp), "written": [str(p) for p in written]}))
        return 0
    for path in written:
        print(path)
    print(f"synthesized {len(aws)} AWS and {len(gcp)} GCP blueprint(s) into {out}/")
    return 0


def _name_line(path) -> int:
    return parse(read_text(path))[1].get(("name",), 1)


def check_unique_names(files, blueprints) -> None:
    """Refuse two blueprints of one synthesis with the same name (it names their stacks, buckets and functions),
    naming both files, before anything is written."""
    first: dict[str, str] = {}
    problems = []
    for path, bp in zip(files, blueprints, strict=True):
        where = f"{path}:{_name_line(path)}"
        if bp.name in first:
            problems.append(f"{where}: name: {bp.name!r} is also the name of {first[bp.name]}; blueprints synthesized "
                            "together need distinct names (a name becomes stack, bucket and function names)")
        else:
            first[bp.name] = where
    if problems:
        raise BlueprintError(problems)
