"""`synth_templates`: CloudFormation templates of AWS blueprints, in one process, without the CDK CLI."""

from __future__ import annotations

import json
import pathlib
import tempfile

from relaytrain.blueprint.schema import Blueprint


def synth_templates(blueprints: list[Blueprint], out_dir: str | pathlib.Path, **stack_kwargs) -> list[pathlib.Path]:
    """Write `out_dir/STACK.template.json` for every AWS blueprint; cdk-nag must pass.

    Raises RelayError for a blueprint the app cannot build and aws_cdk's ValidationFailed
    (every unacknowledged cdk-nag finding) before anything is written.
    """
    from relaytrain.aws.app import build_app

    out = pathlib.Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="relaytrain-cdk-") as tmp:
        app, stacks = build_app(blueprints, outdir=tmp, **stack_kwargs)
        assembly = app.synth()
        templates = {s.stack_name: assembly.get_stack_by_name(s.stack_name).template for s in stacks}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, template in templates.items():
        path = out / f"{name}.template.json"
        path.write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written
