"""`data prepare SOURCE --store URL` and `data inspect URL`: bring a corpus, see what a dataset holds.

`prepare` runs the three preprocess phases (relaytrain_runtime.preprocess) in this process, the
shard phase on a thread pool, a group of objects per task (`shard_objects`: small documents, such as
a text folder's one per file, are encoded together; the parts are the same as one task per object).
On failure it removes the objects it wrote, so the store holds the whole dataset (manifest last) or
nothing new.
"""

from __future__ import annotations

import json
import math
import sys

from relaytrain_runtime.contract.prepare import (
    BPE,
    DEFAULT_SAMPLE_BYTES,
    DEFAULT_VAL_FRACTION,
    DEFAULT_VOCAB_SIZE,
    FORMATS,
    MIN_VOCAB_SIZE,
    PRETRAINED,
)

SAMPLE_TOKENS = 64


def add_arguments(parser) -> dict:
    """The verb's options; returns its action parsers by name (the kit adds to `prepare`)."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("prepare", help="tokenize a corpus into a dataset store (shards + manifest)")
    p.add_argument("source", metavar="SOURCE", help="folder, object prefix or one object: path, file://, s3://, gs://")
    p.add_argument("--store", required=True, help="URL the dataset goes to (a run's --dataset / training.dataset)")
    add_prepare_options(p)
    i = sub.add_parser("inspect", help="documents, tokens, shards, bytes, split and a decoded sample of a dataset")
    i.add_argument("url", metavar="URL", help="the dataset's store URL")
    i.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    return {"prepare": p, "inspect": i}


def add_prepare_options(p) -> None:
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="source format (default: detected from the keys)")
    p.add_argument("--field", default=None, help="record field / column of the text (default: text, messages, "
                                                 "or prompt+response)")
    p.add_argument("--tokenizer", default=BPE, help=f"'{BPE}' (train one; default), '{PRETRAINED}' (the "
                                                    "--init-from model's own), a tokenizer.json, or a model directory")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="the pretrained model the run starts from (path or URL), for --tokenizer pretrained")
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE,
                   help=f"BPE vocabulary (<= the model's; default {DEFAULT_VOCAB_SIZE})")
    p.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help=f"share of documents held out for validation (default {DEFAULT_VAL_FRACTION})")
    p.add_argument("--val-source", default=None, help="a separate source for the validation split")
    p.add_argument("--suffix", default="", help="only source keys ending in this (e.g. .txt)")
    p.add_argument("--sample-bytes", type=int, default=DEFAULT_SAMPLE_BYTES, help="text the BPE is trained on")
    p.add_argument("--workers", type=int, default=4, help="objects tokenized in parallel (default 4)")


def prepare(args, fresh: bool = True) -> dict:
    """Plan, shard every object, write the manifest; the manifest's summary.

    fresh: refuse a store that already holds a dataset (else a rerun with the same settings rewrites it)."""
    from concurrent.futures import ThreadPoolExecutor

    from relaytrain_runtime import RelayError
    from relaytrain_runtime.contract.keys import DATA_PREFIX, MANIFEST_KEY
    from relaytrain_runtime.preprocess import manifest, plan, shard_objects
    from relaytrain_runtime.store import open_store

    if args.vocab_size < MIN_VOCAB_SIZE or args.sample_bytes < 1 or args.workers < 1:
        raise RelayError(f"--vocab-size must be >= {MIN_VOCAB_SIZE}, --sample-bytes and --workers >= 1")
    model = pretrained_tokenizer(args)
    store = open_store(args.store)
    if fresh and store.exists(MANIFEST_KEY):
        raise RelayError(f"{store.url} already holds a dataset ({MANIFEST_KEY}); prepare into another --store")
    before = set(store.list(DATA_PREFIX))
    try:
        planned = plan(args.store, args.source, args.vocab_size, args.sample_bytes, args.suffix, args.format,
                       args.field, args.tokenizer, args.val_fraction, args.val_source, model)
        print(f"tokenizing {planned['count']} objects from {args.source}", file=sys.stderr)
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda group: shard_objects(*group), _groups(planned["items"], args.workers)))
        return manifest(args.store)
    except BaseException:
        for key in set(store.list(DATA_PREFIX)) - before:  # nothing half-written: the store is as it was
            store.delete(key)
        raise


def _groups(items: list[dict], workers: int) -> list[tuple[str, str, list[str]]]:
    """(store, source, keys): the plan's shard events, consecutive objects of one source together, about four
    groups per worker (so the pool stays busy) of at most ENCODE_BATCH objects."""
    from relaytrain_runtime.preprocess import ENCODE_BATCH

    size = max(1, min(ENCODE_BATCH, math.ceil(len(items) / (4 * workers))))
    out: list[tuple[str, str, list[str]]] = []
    for item in items:
        if out and out[-1][:2] == (item["store"], item["source"]) and len(out[-1][2]) < size:
            out[-1][2].append(item["key"])
        else:
            out.append((item["store"], item["source"], [item["key"]]))
    return out


def pretrained_tokenizer(args):
    """For --tokenizer pretrained, the tokenizer of the --init-from model (checked before anything is written)."""
    from relaytrain_runtime import RelayError
    from relaytrain_runtime.data.tokens import load_model

    if args.tokenizer != PRETRAINED:
        if args.init_from:
            raise RelayError(f"--init-from is used only with --tokenizer {PRETRAINED}, not {args.tokenizer}")
        return None
    if not args.init_from:
        raise RelayError(f"--tokenizer {PRETRAINED} uses the tokenizer of the model the run starts from: add "
                         "--init-from DIR (the pretrained model directory or URL)")
    return load_model(args.init_from)


def inspect(url: str) -> dict:
    from relaytrain_runtime.data.build import read_manifest, view_tokens
    from relaytrain_runtime.data.tokens import load_stored
    from relaytrain_runtime.store import open_store

    store = open_store(url)
    manifest = read_manifest(store)
    width = 2 if manifest["dtype"] == "uint16" else 4
    splits = {}
    for name, shards in manifest["splits"].items():
        tokens = sum(map(view_tokens, shards))
        objects = {s["name"] for s in shards} | {s["mask"]["name"] for s in shards if "mask" in s}
        splits[name] = {"tokens": tokens, "shards": len(shards), "objects": len(objects),
                        "bytes": sum(store.size(k) for k in objects),
                        "documents": manifest["corpus"].get("documents", {}).get(name)}
    first = manifest["splits"]["train"][0]
    start = first.get("start", 0)
    raw = store.read(first["name"])[start * width:(start + SAMPLE_TOKENS) * width]
    import numpy as np

    sample = load_stored(store).tokenizer.decode(np.frombuffer(raw, dtype=manifest["dtype"]).tolist(),
                                                 skip_special_tokens=False)
    return {"store": store.url, "vocab_size": manifest["vocab_size"], "dtype": manifest["dtype"],
            "corpus": manifest["corpus"], "special_tokens": manifest["special_tokens"], "splits": splits,
            "sample": sample}


def run(args) -> int:
    if args.action == "prepare":
        print(json.dumps(prepare(args), sort_keys=True))
        return 0
    info = inspect(args.url)
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    corpus = info["corpus"]
    print(f"dataset   {info['store']}")
    print(f"source    {corpus.get('source', corpus.get('name'))} ({corpus.get('format', 'text')}), "
          f"tokenizer {corpus.get('tokenizer', 'bpe')}, vocab {info['vocab_size']} ({info['dtype']})")
    for name, s in info["splits"].items():
        docs = "?" if s["documents"] is None else f"{s['documents']:,}"
        print(f"{name:<9} {docs} documents, {s['tokens']:,} tokens, {s['shards']} shards, {s['bytes']:,} bytes")
    print(f"val split {corpus.get('val', 'documents')}" + (" (instruction data: loss on responses only)"
                                                          if corpus.get("instruction") else ""))
    print(f"sample    {info['sample']!r}")
    return 0
