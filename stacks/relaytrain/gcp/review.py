"""`relaytrain synth` for GCP: one JSON resource plan per blueprint, for review without Pulumi.

A plan lists every resource the program would create (type, logical name, parent component,
inputs) and the result of the policy rules (`relaytrain.gcp.policy`) over them, produced through
the same mocks the tests use: no CLI, no credentials, no network.
"""

from __future__ import annotations

import json
import pathlib

from relaytrain.blueprint.schema import Blueprint


def plan(bp: Blueprint, config=None) -> dict:
    from relaytrain.gcp.mocks import PROJECT, run_program
    from relaytrain.gcp.policy import RULES, violations
    from relaytrain.gcp.program import GcpConfig, build

    config = config or GcpConfig(project=PROJECT)
    resources = run_program(lambda: build(bp, config) and None)
    return {"blueprint": bp.name, "topology": bp.topology, "project": config.project or PROJECT,
            "policy": {"rules": [r.name for r in RULES], "violations": violations(resources)},
            "resources": [r.to_json() for r in resources]}


def write_plans(blueprints: list[Blueprint], out_dir) -> list[pathlib.Path]:
    """Write `<out_dir>/<name>.plan.json` for each blueprint; all plans are built before any is written."""
    plans = [plan(bp) for bp in blueprints]
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in plans:
        path = out / f"{p['blueprint']}.plan.json"
        path.write_text(json.dumps(p, indent=2, sort_keys=False) + "\n")
        written.append(path)
    return written
