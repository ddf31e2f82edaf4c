"""Every key of a run's store, and the parsers that read numbers back out of them.

    spec.json                         the run spec, created once (version 1)
    spec/<version:04d>.json           a later version of the spec (steps raised), created once each
    shards.json                       function-shards config, created once
    baton/<gen:08d>.json              commit manifest, written last with create(); never deleted (the fence)
    baton/<gen:08d>.pruned            marker: gen was pruned (its manifest is a tombstone, its objects gone)
    ckpt/<gen:08d>-<leg>/<object>     a checkpoint's objects
    legs/<gen:08d>-<leg>.json         status of the leg (or node) that committed gen
    eval/<gen:08d>.json               evaluation record of gen
    report/summary.json, loss.png     the local relay's report
    data/manifest.json, tokenizer.json, prepare.json, tokenizer/, parts/...   a prepared dataset
    rounds/<round>-<baton>/...        function-shards exchange objects
    inner/<round:08d>/<shard:04d>     diloco: a shard's AdamW moments
    metrics/<gen:08d>-<leg>.jsonl     the metrics stream: one object per commit, never rewritten
    base/<sha256>/<file>              a pretrained start's frozen weights and tokenizer, stored once
    probe/<token>                     a leg's writability probe, removed at once

Pure Python; no torch.
"""

from __future__ import annotations

SPEC_KEY = "spec.json"
SPEC_VERSIONS_PREFIX = "spec/"  # spec/<version:04d>.json: later versions of the spec (raised steps), create-only
SHARDS_CONFIG_KEY = "shards.json"
COMMIT_PREFIX = "baton/"
CKPT_PREFIX = "ckpt/"
LEGS_PREFIX = "legs/"
EVAL_PREFIX = "eval/"
REPORT_PREFIX = "report/"
SUMMARY_KEY = REPORT_PREFIX + "summary.json"
LOSS_PNG_KEY = REPORT_PREFIX + "loss.png"
DATA_PREFIX = "data/"
MANIFEST_KEY = DATA_PREFIX + "manifest.json"
TOKENIZER_KEY = DATA_PREFIX + "tokenizer.json"
PARTS_PREFIX = DATA_PREFIX + "parts/"
ROUNDS_PREFIX = "rounds/"
INNER_PREFIX = "inner/"

GEN_WIDTH = 8


def spec_version_key(version: int) -> str:
    """The key of spec version `version` (1 is spec.json itself)."""
    return SPEC_KEY if version == 1 else f"{SPEC_VERSIONS_PREFIX}{version:04d}.json"


def version_of_spec_key(key: str) -> int | None:
    """The version of a `spec/<version>.json` key; None for any other key."""
    if not key.startswith(SPEC_VERSIONS_PREFIX) or not key.endswith(".json"):
        return None
    number = key[len(SPEC_VERSIONS_PREFIX):-len(".json")]
    return int(number) if number.isdigit() else None


def commit_key(gen: int) -> str:
    return f"{COMMIT_PREFIX}{gen:0{GEN_WIDTH}d}.json"


def gen_of_commit_key(key: str) -> int | None:
    """The gen of a `baton/<gen>.json` key; None for any other key."""
    if not key.startswith(COMMIT_PREFIX):
        return None
    stem = key[len(COMMIT_PREFIX):]
    stem = stem[:-5] if stem.endswith(".json") else ""
    return int(stem) if stem.isdigit() and len(stem) == GEN_WIDTH else None


PRUNED_SUFFIX = ".pruned"


def pruned_key(gen: int) -> str:
    """The marker that gen was pruned: `baton/<gen>.pruned`, beside the manifest it retires."""
    return f"{COMMIT_PREFIX}{gen:0{GEN_WIDTH}d}{PRUNED_SUFFIX}"


def gen_of_pruned_key(key: str) -> int | None:
    """The gen of a `baton/<gen>.pruned` key; None for any other key."""
    if not key.startswith(COMMIT_PREFIX) or not key.endswith(PRUNED_SUFFIX):
        return None
    stem = key[len(COMMIT_PREFIX):-len(PRUNED_SUFFIX)]
    return int(stem) if stem.isdigit() and len(stem) == GEN_WIDTH else None


def ckpt_prefix(gen: int, leg_id: str) -> str:
    return f"{CKPT_PREFIX}{gen:0{GEN_WIDTH}d}-{leg_id}/"


def gen_of_ckpt_key(key: str) -> int | None:
    """The gen of a `ckpt/<gen>-<leg>/...` key; None for any other key."""
    if not key.startswith(CKPT_PREFIX):
        return None
    stem = key[len(CKPT_PREFIX):].split("-", 1)[0]
    return int(stem) if stem.isdigit() else None


def leg_of_ckpt_key(key: str) -> str | None:
    """The leg id of a `ckpt/<gen>-<leg>/...` key; None for any other key."""
    if gen_of_ckpt_key(key) is None:
        return None
    head = key[len(CKPT_PREFIX):].split("/", 1)[0]
    return head.split("-", 1)[1] if "-" in head else None


def leg_status_key(gen: int, leg_id: str) -> str:
    return f"{LEGS_PREFIX}{gen:0{GEN_WIDTH}d}-{leg_id}.json"


def eval_key(gen: int) -> str:
    return f"{EVAL_PREFIX}{gen:0{GEN_WIDTH}d}.json"


def inner_key(rnd: int, shard: int) -> str:
    return f"{INNER_PREFIX}{rnd:08d}/{shard:04d}"


def round_of_inner_key(key: str) -> int | None:
    if not key.startswith(INNER_PREFIX):
        return None
    number = key[len(INNER_PREFIX):].split("/", 1)[0]
    return int(number) if number.isdigit() else None


METRICS_PREFIX = "metrics/"
BASE_PREFIX = "base/"  # a pretrained start's frozen weights and tokenizer, stored once: base/<sha256>/<file>


def base_key(sha256: str, name: str) -> str:
    """base/<sha256>/<name>: a file of a pretrained start's directory."""
    return f"{BASE_PREFIX}{sha256}/{name}"


def metrics_key(gen: int, leg_id: str) -> str:
    """One append-only metrics object per commit: `metrics/<gen>-<leg>.jsonl` (never rewritten)."""
    return f"{METRICS_PREFIX}{gen:0{GEN_WIDTH}d}-{leg_id}.jsonl"


def gen_of_metrics_key(key: str) -> int | None:
    if not key.startswith(METRICS_PREFIX) or not key.endswith(".jsonl"):
        return None
    stem = key[len(METRICS_PREFIX):].split("-", 1)[0]
    return int(stem) if stem.isdigit() else None


def leg_of_metrics_key(key: str) -> str | None:
    """The leg id of a `metrics/<gen>-<leg>.jsonl` key; None for any other key."""
    if gen_of_metrics_key(key) is None:
        return None
    parts = key[len(METRICS_PREFIX):-len(".jsonl")].split("-", 1)
    return parts[1] if len(parts) == 2 and parts[1] else None


PROBE_PREFIX = "probe/"


def probe_key(token: str) -> str:
    """A leg's writability probe (`Baton.check_writable`), deleted right after it is read back."""
    return f"{PROBE_PREFIX}{token}"


PREPARE_KEY = DATA_PREFIX + "prepare.json"  # a dataset's preparation settings, created once by the plan phase
TOKENIZER_DIR_PREFIX = DATA_PREFIX + "tokenizer/"  # a pretrained tokenizer's own files (config, chat template)
