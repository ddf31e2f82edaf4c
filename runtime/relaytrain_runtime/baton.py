"""The baton: the run's state in its store (layout in docs/ARCHITECTURE.md, "Baton layout").

    spec.json                 the run spec, created once; a different spec is refused
    ckpt/<gen>-<leg>/...      a checkpoint's objects: weights.safetensors, optimizer.safetensors, state.json
    baton/<gen>.json          the commit (manifest): every object with size and sha256, step, tokens, loss,
                              rng, data position, accrued cost, parent gen. Written LAST with create().

A checkpoint exists only once its manifest does; no object is ever rewritten. Loading verifies every
object's sha256; a corrupt or truncated checkpoint is skipped with a warning naming the bad object and
the previous good one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid

from concurrent.futures import ThreadPoolExecutor

import torch

from relaytrain_runtime import RelayError, respec
from relaytrain_runtime.tensorfile import decode, encode
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import NotFound, Store, open_store

from relaytrain_runtime.contract.keys import (  # noqa: F401 (re-exported: the layout's names)
    CKPT_PREFIX, COMMIT_PREFIX, EVAL_PREFIX, LEGS_PREFIX, SPEC_KEY, ckpt_prefix, commit_key, gen_of_ckpt_key,
    gen_of_commit_key, leg_status_key)
PAUSE_ENV = "RELAYTRAIN_TEST_SAVE_PAUSE"  # tests: seconds to sleep between checkpoint objects (targets mid-save kills)


class CorruptCheckpoint(RelayError):
    """A checkpoint object is missing, truncated or does not match its manifest."""


WEIGHTS_METADATA = {"format": "pt"}


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors' canonical safetensors encoding (sorted names; dtype, shape and bytes of each):
    equal iff the weights are. It is also the sha256 of a checkpoint's weights.safetensors, so a commit
    gets it without a second pass over the weights."""
    return _sha256_parts(encode(tensors, WEIGHTS_METADATA))


def _sha256_parts(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, rest = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for idx, slots in opt_state["state"].items():
        rest["state"][str(idx)] = {}
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value.contiguous()
            else:
                rest["state"][str(idx)][name] = value
    return tensors, rest


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state = {int(idx): dict(slots) for idx, slots in rest["state"].items()}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


class Baton:
    """The run in `store`. Training state (`load`/`commit`) is a dict:
    {"weights": {name: tensor}, "optimizer": optimizer.state_dict(), "meta": {...}} where meta holds at least
    step, tokens, loss, done, rng, metrics and cost_usd.
    """

    def __init__(self, store: Store | str):
        self.store = open_store(store) if isinstance(store, str) else store
        self.warnings: list[str] = []
        self.next_gen: int | None = None  # the gen the next commit takes: highest existing at resume time + 1

    # ------------------------------------------------------------------------------ spec

    def init(self, spec: RunSpec) -> bool:
        """Write the run spec once. True if written now (or recorded as a new version raising steps), False if
        the identical spec was there already."""
        self.store.check()
        if self.store.create(SPEC_KEY, spec.to_json().encode()):
            return True
        try:
            if not respec.is_new_version(self.spec(), spec):
                return False
        except RelayError as exc:
            raise RelayError(f"{self.store.url} {exc}") from None
        respec.record_version(self.store, spec)
        return True

    def spec(self) -> RunSpec:
        try:
            key = respec.current_key(self.store)
            raw = self.store.read(key)
        except NotFound:
            raise RelayError(f"no run at {self.store.url} (no {SPEC_KEY}); start one with "
                             "`relaytrain init --store URL --preset NAME --steps N`") from None
        try:
            return RunSpec.from_json(raw)
        except RelayError as exc:
            raise RelayError(f"{self.store.url}/{key} is unusable: {exc}; "
                             "restore it or start the run in a new store") from None

    # ----------------------------------------------------------------------------- commits

    def gens(self) -> list[int]:
        """Gens of every commit manifest present (verified or not), ascending."""
        return sorted(g for g in map(gen_of_commit_key, self.store.list(COMMIT_PREFIX)) if g is not None)

    def manifest(self, gen: int) -> dict:
        key = commit_key(gen)
        try:
            commit = json.loads(self.store.read(key))
            commit["objects"], commit["step"]  # noqa: B018 (shape check)
        except NotFound:
            raise CorruptCheckpoint(f"{key} is missing") from None
        except (ValueError, KeyError, TypeError):
            raise CorruptCheckpoint(f"{key} is corrupt (not a commit manifest)") from None
        return commit

    def _read_verified(self, commit: dict, name: str) -> bytearray:
        obj = commit["objects"][name]
        h = hashlib.sha256()
        with ThreadPoolExecutor(1) as hasher:  # one worker keeps the chunks in order; hashing overlaps reading
            try:
                raw = self.store.read_buffer(obj["key"], on_chunk=lambda view: hasher.submit(h.update, view))
            except NotFound:
                raise CorruptCheckpoint(f"{obj['key']} is missing") from None
        if len(raw) != obj["size"]:
            raise CorruptCheckpoint(f"{obj['key']} is truncated ({len(raw)} of {obj['size']} bytes)")
        if h.hexdigest() != obj["sha256"]:
            raise CorruptCheckpoint(f"{obj['key']} is corrupt (sha256 mismatch)")
        return raw

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"relaytrain: warning: {message}", file=sys.stderr, flush=True)

    def _candidates(self):
        """(gen, commit) from the newest down, skipping unreadable manifests with a warning."""
        gens = self.gens()
        self.next_gen = (gens[-1] if gens else 0) + 1
        for gen in reversed(gens):
            try:
                yield self.manifest(gen)
            except CorruptCheckpoint as exc:
                self._warn(f"checkpoint gen {gen} is unusable: {exc}; falling back to the previous one")

    def _no_usable(self) -> RelayError:
        return RelayError(f"{self.store.url} has commits but no usable checkpoint (see the warnings above); "
                          f"delete the bad {COMMIT_PREFIX}*.json objects to restart the run from step 0")

    def latest(self, verify: bool = True) -> dict | None:
        """The newest commit whose objects verify (None if the run has no commit yet)."""
        for commit in self._candidates():
            try:
                if verify:
                    for name in commit["objects"]:
                        self._read_verified(commit, name)
                return commit
            except CorruptCheckpoint as exc:
                self._warn(f"checkpoint gen {commit['gen']} is unusable: {exc}; falling back to the previous one")
        if self.next_gen > 1:  # commits exist, none usable: never restart silently from step 0
            raise self._no_usable()
        return None

    def load(self, commit: dict) -> dict:
        """The training state of a commit; raises CorruptCheckpoint if any object fails verification."""
        with ThreadPoolExecutor(3) as pool:  # the objects load in parallel
            raws = {name: pool.submit(self._read_verified, commit, name) for name in ("weights", "optimizer", "state")}
            weights, opt_tensors = decode(raws["weights"].result()), decode(raws["optimizer"].result())
            state = json.loads(raws["state"].result())
        return {"weights": weights, "optimizer": _unflatten_optimizer(opt_tensors, state.pop("optimizer")),
                "meta": {**state, "gen": commit["gen"]}}

    def read_state(self, commit: dict) -> dict:
        """The verified JSON state of a commit (step, metrics, timings, ...) without loading tensors."""
        state = json.loads(self._read_verified(commit, "state"))
        state.pop("optimizer", None)
        return state

    def resume(self) -> tuple[dict | None, dict | None]:
        """(commit, state) of the newest loadable checkpoint, or (None, None) for a fresh run."""
        for commit in self._candidates():
            try:
                return commit, self.load(commit)
            except CorruptCheckpoint as exc:
                self._warn(f"checkpoint gen {commit['gen']} is unusable: {exc}; falling back to the previous one")
        if self.next_gen > 1:  # commits exist, none usable: never restart silently from step 0
            raise self._no_usable()
        return None, None

    def commit(self, parent_gen: int, state: dict, *, leg_id: str | None = None, gen: int | None = None) -> dict | None:
        """Write a checkpoint's objects, then its manifest with create(). Returns the commit, or None when
        another leg committed this gen first (the race is lost; our objects are removed)."""
        if gen is None:
            if self.next_gen is None:
                gens = self.gens()
                self.next_gen = (gens[-1] if gens else 0) + 1
            gen = self.next_gen
        leg_id = leg_id or uuid.uuid4().hex[:8]
        prefix = ckpt_prefix(gen, leg_id)
        meta = dict(state["meta"])
        opt_tensors, opt_rest = _flatten_optimizer(state["optimizer"])
        payloads = {
            "weights": (prefix + "weights.safetensors", lambda: encode(state["weights"], WEIGHTS_METADATA)),
            "optimizer": (prefix + "optimizer.safetensors", lambda: encode(opt_tensors)),
            "state": (prefix + "state.json", lambda: [json.dumps({**meta, "optimizer": opt_rest}).encode()]),
        }
        pause = float(os.environ.get(PAUSE_ENV) or 0)
        t0 = time.perf_counter()
        objects = {}
        with ThreadPoolExecutor(1) as pool:  # hashing (GIL released) overlaps the writes
            for name, (key, make) in payloads.items():
                parts = make()
                sha = pool.submit(_sha256_parts, parts)
                self.store.write_parts(key, parts)
                objects[name] = {"key": key, "size": sum(len(p) for p in parts), "sha256": sha.result()}
                del parts
                if pause:
                    time.sleep(pause)
        commit = {
            "gen": gen, "parent": parent_gen, "leg_id": leg_id, "created": time.time(), "objects": objects,
            "weights_sha256": objects["weights"]["sha256"],
            **{k: meta.get(k) for k in ("step", "tokens", "loss", "done", "cost_usd", "rng", "spec_digest")},
            "data": {"next_step": meta.get("step")},
            "save_seconds": round(time.perf_counter() - t0, 4),
        }
        if not self.store.create(commit_key(gen), (json.dumps(commit, indent=1) + "\n").encode()):
            for obj in objects.values():
                self.store.delete(obj["key"])
            return None
        self.next_gen = gen + 1
        return commit

    def prune(self, keep_last: int) -> list[int]:
        """Delete all but the newest `keep_last` commits (manifest first, then its objects) and orphaned
        checkpoint objects older than the oldest kept commit. Returns the pruned gens."""
        gens = self.gens()
        keep = gens[-keep_last:] if keep_last > 0 else []
        oldest_kept = keep[0] if keep else 0
        pruned = [g for g in gens if g < oldest_kept]
        for gen in pruned:
            self.store.delete(commit_key(gen))
        for key in self.store.list(CKPT_PREFIX):
            ckpt_gen = gen_of_ckpt_key(key)
            if ckpt_gen is not None and ckpt_gen < oldest_kept:
                self.store.delete(key)
        return pruned

    # ------------------------------------------------------------------------------ reports

    def write_leg_status(self, gen: int, leg_id: str, status: dict) -> None:
        self.store.write(leg_status_key(gen, leg_id), (json.dumps(status, indent=1) + "\n").encode())

    def leg_statuses(self) -> list[dict]:
        out = []
        for key in self.store.list(LEGS_PREFIX):
            try:
                out.append(json.loads(self.store.read(key)))
            except (ValueError, NotFound):
                continue
        return out
