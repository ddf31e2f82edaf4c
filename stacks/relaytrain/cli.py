"""`relaytrain`: the kit's command.

Kit verbs (blueprints, planning, synthesis, deployment control) live in `relaytrain.commands`;
runtime verbs (init, leg, train, ...) are forwarded to the runtime's dispatcher, which loads
torch only for the verb that needs it.
"""

from __future__ import annotations

import sys

from relaytrain_runtime.cli import VERBS as RUNTIME_VERBS
from relaytrain_runtime.cli import dispatch

KIT_VERBS: dict[str, tuple[str, str]] = {
    "validate": ("relaytrain.commands.validate", "validate blueprint files (exit 0 when all are valid, 2 otherwise)"),
    "plan": ("relaytrain.commands.plan", "predict time and cost of a blueprint before deploying; --compare several"),
    "run": ("relaytrain.commands.run", "run a blueprint's topology on this machine (--local)"),
    "synth": ("relaytrain.commands.synth", "write CloudFormation templates (AWS) and resource plans (GCP) for review"),
    "launch": ("relaytrain.commands.launch", "start a run on a deployed AWS stack"),
    "status": ("relaytrain.commands.status", "show a deployed run: step, loss, legs, accrued cost, latest checkpoint"),
    "data": ("relaytrain.commands.data", "prepare a dataset (checked against a blueprint's bucket) or inspect one"),
}

VERBS = {**KIT_VERBS, **{k: v for k, v in RUNTIME_VERBS.items() if k not in KIT_VERBS}}


def main(argv: list[str] | None = None) -> int:
    return dispatch(sys.argv[1:] if argv is None else argv, "relaytrain", VERBS)


if __name__ == "__main__":
    raise SystemExit(main())
