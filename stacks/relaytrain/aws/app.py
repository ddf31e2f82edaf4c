"""The CDK app: one RelaytrainStack per AWS blueprint, checked by cdk-nag.

`cdk synth -c blueprint=blueprints/NAME.yaml` (several: comma-separated) builds those blueprints;
without the context value, every AWS blueprint of the catalog. `cdk.json` runs this module.
"""

from __future__ import annotations

import json
import os
import pathlib

from aws_cdk import App, DefaultStackSynthesizer, Environment

from relaytrain.aws import nag
from relaytrain.aws.stack import RelaytrainStack
from relaytrain.blueprint.schema import Blueprint

CDK_JSON = pathlib.Path(__file__).resolve().parents[3] / "cdk.json"
# The feature flags of a new CDK app for the pinned aws-cdk-lib (cdk.json's context, read here so
# `relaytrain synth` in one process and `npx cdk synth` build the same templates).
FEATURE_FLAGS = {k: v for k, v in json.loads(CDK_JSON.read_text())["context"].items() if k.startswith("@aws-cdk")}


def build_app(blueprints: list[Blueprint], *, outdir: str | None = None,
              **stack_kwargs) -> tuple[App, list[RelaytrainStack]]:
    """An app with one stack per AWS blueprint (others are skipped) and cdk-nag registered."""
    options = {"outdir": outdir} if outdir else {}
    app = App(analytics_reporting=False, context=FEATURE_FLAGS, **options)
    nag.register(app)
    stacks = [_stack(app, bp, **stack_kwargs) for bp in blueprints if bp.cloud == "aws"]
    return app, stacks


def _stack(app: App, bp: Blueprint, **kwargs) -> RelaytrainStack:
    # Account from the CLI's credentials when deploying; the region comes from the blueprint.
    env = Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=bp.region)  # resolved by load()
    return RelaytrainStack(app, bp, env=env, synthesizer=DefaultStackSynthesizer(), **kwargs)


def _blueprints_from_context(value: str | None) -> list[Blueprint]:
    from relaytrain.blueprint import catalog_files, load_all

    files = [pathlib.Path(v.strip()) for v in value.split(",") if v.strip()] if value else catalog_files()
    return [bp for bp in load_all(files, deployed=True) if bp.cloud == "aws"]


def main() -> None:
    probe = App()
    value = probe.node.try_get_context("blueprint")
    app, _ = build_app(_blueprints_from_context(value))
    app.synth()


if __name__ == "__main__":
    main()
