"""One module per kit verb: `add_arguments(parser)` and `run(args) -> int`."""
