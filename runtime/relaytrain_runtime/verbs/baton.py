"""`baton`: show the run's state: step, done, loss, weights digest, checkpoints.

Everything it reports is verified: the newest checkpoint whose manifest is well formed, whose objects
match their sha256 (so `weights_sha256` is the digest of the weights read back) and whose state.json
agrees with the manifest (step, tokens, done, loss, spec digest), trained with the spec in the store."""

from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from relaytrain_runtime.baton import Baton
    from relaytrain_runtime.store import open_store

    baton = Baton(open_store(args.store))
    spec = baton.spec()
    commit = baton.latest(verify=True)
    info = {"store": baton.store.url, "preset": spec.preset, "steps": spec.steps, "spec_digest": spec.digest(),
            "step": 0, "done": False, "loss": None, "tokens": 0, "gen": 0, "cost_usd": 0.0, "weights_sha256": None,
            "checkpoints": baton.gens(), "warnings": baton.warnings, "verified": True}
    if commit is not None:
        baton.check_spec(commit, spec)
        info.update({k: commit.get(k) for k in ("step", "done", "loss", "tokens", "gen", "cost_usd", "weights_sha256")})
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        state = "done" if info["done"] else "in progress"
        print(f"{info['store']}: {spec.preset}, step {info['step']}/{spec.steps} ({state}), loss {info['loss']}, "
              f"gen {info['gen']}, cost ${info['cost_usd']:.4f}, weights {info['weights_sha256']} (verified)")
    return 0
