"""`relaytrain`: the kit's command.

Kit verbs (blueprints, planning, synthesis, deployment control, watching runs) live in
`relaytrain.commands`; runtime verbs (init, leg, train, ...) are forwarded to the runtime's
dispatcher, which loads torch only for the verb that needs it.
"""

from __future__ import annotations

import os
import sys

from relaytrain import __version__
from relaytrain_runtime import __version__ as RUNTIME_VERSION
from relaytrain_runtime.cli import VERBS as RUNTIME_VERBS
from relaytrain_runtime.cli import dispatch

DESCRIPTION = ("relaytrain: infrastructure-as-code blueprints for training language models on serverless and GPU "
               "clouds (AWS CDK, GCP Pulumi) and locally. Kit verbs first, then the training runtime's verbs; "
               "`relaytrain --version` prints the versions.")

KIT_VERBS: dict[str, tuple[str, str]] = {
    "validate": ("relaytrain.commands.validate", "validate blueprint files (exit 0 when all are valid, 2 otherwise)"),
    "plan": ("relaytrain.commands.plan", "predict time and cost of a blueprint before deploying; --compare several"),
    "run": ("relaytrain.commands.run", "run a blueprint's topology on this machine (--local)"),
    "synth": ("relaytrain.commands.synth", "write CloudFormation templates (AWS) and resource plans (GCP) for review"),
    "launch": ("relaytrain.commands.launch", "start a run on a deployed AWS stack"),
    "status": ("relaytrain.commands.status", "show a run (--store URL or a deployed AWS stack): step, loss, val loss, "
                                             "tokens/s, ETA, cost and projected cost; --watch"),
    "report": ("relaytrain.commands.report", "plots, summary table (--out) and TensorBoard event files "
                                             "(--tensorboard) of a run's metrics stream"),
    "image": ("relaytrain.commands.image", "build or push the runtime's Lambda image (runtime/Dockerfile) for CI"),
    "data": ("relaytrain.commands.data", "prepare a dataset (checked against a blueprint's bucket) or inspect one"),
}

VERBS = {**KIT_VERBS, **{k: v for k, v in RUNTIME_VERBS.items() if k not in KIT_VERBS}}


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (`relaytrain plan --json | head`): stop quietly, like a tool killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    return 141


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        print(f"relaytrain {__version__} (runtime {RUNTIME_VERSION})")
        return 0
    try:
        code = dispatch(argv, "relaytrain", VERBS, DESCRIPTION)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()


if __name__ == "__main__":
    raise SystemExit(main())
