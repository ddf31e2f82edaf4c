"""Data-parallel training over stateless function shards that meet only through the store.

- `exchange`: the round's objects (format, dtype casting, reduce-scatter, checks, sweep).
- `config`: the `functions:` settings of a run (sync mode, K, H, dtype, outer optimizer).
- `rounds`: the algorithms: a shard's work, a reducer's work, the fenced commit.
- `entry`: `shard_op(event, deadline)` / `reduce_op(event, deadline)`, the handler entry points.

Importing this package does not import torch; its modules do.
"""
