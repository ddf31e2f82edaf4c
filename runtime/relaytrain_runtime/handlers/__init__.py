"""Cloud entry points: the event contract shared by AWS Lambda, Cloud Functions and the CLI.

An event is a JSON object with `store` (a run's store URL) and optionally `op` (`leg` by
default; see `ops.OPS`). A handler returns a JSON object: the op's result, or
`{"error": {"type", "message", "op"}}` for an event the op cannot serve. Modules here import no
torch at module level, so a bad event is answered without paying for it.
"""
