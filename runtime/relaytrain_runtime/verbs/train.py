"""`train`: the local relay. Init the run if needed, then legs in fresh processes until done."""

from __future__ import annotations

from relaytrain_runtime.verbs._common import add_spec_arguments, spec_from_args


def add_arguments(parser) -> None:
    parser.add_argument("--store", required=True, help="store URL of the run (file:///abs/path)")
    legs = parser.add_mutually_exclusive_group()
    legs.add_argument("--leg-seconds", type=float, default=None, help="time box of each leg (like a Lambda timeout)")
    legs.add_argument("--leg-steps", type=int, default=None, help="steps per leg")
    parser.add_argument("--cost-per-second", type=float, default=0.0, help="USD per second of a leg worker (accrued)")
    parser.add_argument("--max-retries", type=int, default=3, help="consecutive failed legs tolerated (default 3)")
    add_spec_arguments(parser, required=False)


def run(args) -> int:
    from relaytrain_runtime.pretrained import prepare_spec
    from relaytrain_runtime.relay import relay
    from relaytrain_runtime.store import open_store

    spec = spec_from_args(args)
    if spec is not None:
        spec = prepare_spec(open_store(args.store), spec)  # a pretrained start: checked, then its base stored once
    relay(args.store, spec, leg_seconds=args.leg_seconds, leg_steps=args.leg_steps,
          cost_per_second=args.cost_per_second, max_retries=args.max_retries)
    return 0
