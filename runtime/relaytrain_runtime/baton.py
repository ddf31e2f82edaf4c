"""The baton: the run's state in its store (layout in docs/ARCHITECTURE.md, "Baton layout").

    spec.json                 the run spec, created once; a different spec is refused
    ckpt/<gen>-<leg>/...      a checkpoint's objects: weights.safetensors, optimizer.safetensors, state.json
    baton/<gen>.json          the commit (manifest): every object with size and sha256, step, tokens, loss,
                              rng, data position, accrued cost, parent gen. Written LAST with create().
    baton/<gen>.pruned        the marker that gen was pruned

A checkpoint exists only once its manifest does; no object is ever rewritten. Loading verifies every
object's sha256 and the manifest's shape; a corrupt, truncated or malformed checkpoint is skipped with a
warning naming the bad object and the previous good one is used.

Fencing: a manifest key, once created, never disappears. Pruning writes the marker, then replaces the
manifest by a small tombstone (an atomic overwrite: the key exists throughout), then deletes the objects.
So a stale leg's create() of a pruned gen fails like that of a live one: S3 `If-None-Match: *`, GCS
`ifGenerationMatch=0` and file link(2) all refuse an existing name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import torch

from relaytrain_runtime import RelayError, respec
from relaytrain_runtime.contract.keys import (  # noqa: F401 (re-exported: the layout's names)
    CKPT_PREFIX,
    COMMIT_PREFIX,
    EVAL_PREFIX,
    LEGS_PREFIX,
    SPEC_KEY,
    ckpt_prefix,
    commit_key,
    eval_key,
    gen_of_ckpt_key,
    gen_of_commit_key,
    gen_of_pruned_key,
    leg_of_ckpt_key,
    leg_status_key,
    probe_key,
    pruned_key,
)
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import NotFound, Store, StoreError, open_store
from relaytrain_runtime.tensorfile import decode, encode

SHARDED_FORMAT = "dcp"  # a commit whose tensors are torch.distributed.checkpoint files (relaytrain_runtime.distributed)
PAUSE_ENV = "RELAYTRAIN_TEST_SAVE_PAUSE"  # tests only: seconds to pause after each checkpoint object (kill tests)
RESCANS = 8  # a loader whose checkpoint is pruned under it starts over on the newest gen, at most this often


class Hooks:
    """Injection points of the commit protocol, called at each step where another worker can interleave.
    The default does nothing; tests subclass it to run other legs, prunes or faults at an exact point."""

    def object_written(self, baton: Baton, gen: int, name: str) -> None:
        """After checkpoint object `name` of `gen` is written (before the next one, or the manifest)."""

    def before_manifest(self, baton: Baton, gen: int) -> None:
        """After every object of `gen` is written, before its manifest is created."""

    def before_prune(self, baton: Baton, gens: list[int]) -> None:
        """After a prune chose `gens`, before anything is deleted."""

    def before_load(self, baton: Baton, commit: dict) -> None:
        """After a loader chose `commit`, before it reads the commit's objects."""


class PauseHooks(Hooks):
    """Sleeps after every checkpoint object: widens the save window for subprocess kill tests."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def object_written(self, baton: Baton, gen: int, name: str) -> None:
        time.sleep(self.seconds)


def _hooks_from_env() -> Hooks:
    """The one place the test-only PAUSE_ENV is read."""
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    return PauseHooks(pause) if pause > 0 else Hooks()


HOOKS: Hooks = _hooks_from_env()  # what a Baton made without `hooks=` uses (tests may replace it)


class CorruptCheckpoint(RelayError):
    """A checkpoint object is missing, truncated or does not match its manifest, or the manifest is malformed."""


class PrunedCheckpoint(CorruptCheckpoint):
    """The gen was pruned (its manifest is a tombstone)."""


OBJECT_NAMES = ("weights", "optimizer", "state")
SHA256_HEX = frozenset("0123456789abcdef")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _manifest_problem(commit, gen: int) -> str | None:
    """Why `commit` (parsed JSON of baton/<gen>.json) is not a usable commit manifest, or None.

    The one place that says what a manifest holds; contract/records.py's CommitManifest can take it over."""
    if not isinstance(commit, dict):
        return "not a JSON object"
    if commit.get("gen") != gen or not _is_int(commit.get("gen")):
        return f"gen is {commit.get('gen')!r}, expected {gen} (its key)"
    leg_id = commit.get("leg_id")
    if not isinstance(leg_id, str) or not leg_id or "/" in leg_id or leg_id in (".", ".."):
        return f"leg_id {leg_id!r} is not a leg id"
    for field in ("parent", "step", "tokens"):
        if not _is_int(commit.get(field)) or commit[field] < 0:
            return f"{field} {commit.get(field)!r} is not a non-negative integer"
    if not isinstance(commit.get("done"), bool):
        return f"done {commit.get('done')!r} is not true/false"
    loss, cost = commit.get("loss"), commit.get("cost_usd")
    if loss is not None and not (_is_int(loss) or isinstance(loss, float)):  # a diverged run's NaN is a loss too
        return f"loss {loss!r} is not a number"
    if cost is not None and not (_is_number(cost) and cost >= 0):
        return f"cost_usd {cost!r} is not a finite non-negative number"
    if commit.get("spec_digest") is not None and not isinstance(commit["spec_digest"], str):
        return f"spec_digest {commit['spec_digest']!r} is not a string"
    objects = commit.get("objects")
    sharded = commit.get("format") == SHARDED_FORMAT
    if sharded:  # torch.distributed.checkpoint files (named by DCP) and state.json
        if not isinstance(objects, dict) or "state" not in objects:
            return "objects of a sharded checkpoint must include state"
    elif commit.get("format") is not None:
        return f"format {commit.get('format')!r} is not a checkpoint format (expected {SHARDED_FORMAT!r} or none)"
    elif not isinstance(objects, dict) or sorted(objects) != sorted(OBJECT_NAMES):
        return f"objects must be exactly {', '.join(OBJECT_NAMES)}"
    prefix = ckpt_prefix(gen, leg_id)
    for name, obj in objects.items():
        if not isinstance(obj, dict):
            return f"objects.{name} is not an object"
        key, size, sha = obj.get("key"), obj.get("size"), obj.get("sha256")
        if not isinstance(key, str) or not key.startswith(prefix) or "/.." in key or "//" in key:
            return f"objects.{name}.key {key!r} is outside the checkpoint's prefix {prefix}"
        if not _is_int(size) or size < 0:
            return f"objects.{name}.size {size!r} is not a byte count"
        if not isinstance(sha, str) or len(sha) != 64 or not SHA256_HEX.issuperset(sha):
            return f"objects.{name}.sha256 is not a sha256 hex digest"
    if not sharded and commit.get("weights_sha256") != objects["weights"]["sha256"]:
        return "weights_sha256 differs from the weights object's sha256"
    return None


def check_manifest(raw: bytes, gen: int) -> dict:
    """The commit manifest in `raw` (the bytes of baton/<gen>.json); raises PrunedCheckpoint for a tombstone and
    CorruptCheckpoint naming the first problem for anything that is not a well-formed manifest of `gen`."""
    key = commit_key(gen)
    try:
        commit = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CorruptCheckpoint(f"{key} is corrupt (not a commit manifest)") from None
    if isinstance(commit, dict) and commit.get("pruned") is True:
        raise PrunedCheckpoint(f"gen {gen} was pruned")
    problem = _manifest_problem(commit, gen)
    if problem:
        raise CorruptCheckpoint(f"{key} is malformed: {problem}")
    return commit


def _is_prepared_form(stored: RunSpec, asked: RunSpec) -> bool:
    """Whether `stored` is what preparing the pretrained start `asked` wrote (pretrained.prepare_spec fills in the
    base's digest and the full shape read from the directory instead of a preset, and spells a local path as its
    file:// URL); every other field must be equal."""
    filled = ("init_sha256", "model_shape", "init_from", "preset")
    same = all(v == stored.to_dict().get(k) for k, v in asked.to_dict().items() if k not in filled)
    where = asked.init_from if "://" in asked.init_from else None
    return same and bool(stored.init_sha256) and (where is None or stored.init_from == where)


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _state_problem(commit: dict, state) -> str | None:
    """Why a checkpoint's verified state.json disagrees with what its manifest says, or None."""
    if not isinstance(state, dict):
        return "state.json is not a JSON object"
    for field in ("step", "tokens", "done", "loss", "spec_digest"):
        ours, theirs = commit.get(field), state.get(field)
        if ours != theirs and not (field == "loss" and _both_nan(ours, theirs)):
            return f"the manifest says {field}={commit.get(field)!r}, its state.json {state.get(field)!r}"
    return None


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

    def __init__(self, store: Store | str, hooks: Hooks | None = None):
        self.store = open_store(store) if isinstance(store, str) else store
        self.hooks = hooks or HOOKS
        self.warnings: list[str] = []
        self.next_gen: int | None = None  # the gen the next commit takes: highest existing at resume time + 1

    # ------------------------------------------------------------------------------ spec

    def init(self, spec: RunSpec) -> bool:
        """Write the run spec once. True if written now (or recorded as a new version raising steps), False if
        the identical spec was there already."""
        self.store.check()
        if spec.init_from and not spec.init_sha256:
            # a worker never copies a pretrained base from a location an event names: the operator's
            # `relaytrain init --init-from` (pretrained.prepare_spec) stores it under base/ first. A worker
            # handed the blueprint's (unprepared) spec of a run prepared so continues that run.
            if self.store.exists(SPEC_KEY) and _is_prepared_form(self.spec(), spec):
                return False
            raise RelayError(f"{self.store.url}: a pretrained start ({spec.init_from}) must be prepared first: run "
                             "`relaytrain init --store URL --init-from DIR ...` (it stores the base once, by digest)")
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

    def check_spec(self, commit: dict, spec: RunSpec | None = None) -> None:
        """Refuse a store whose spec is not the spec `commit` was trained with, nor an earlier recorded version of
        it (one clear line)."""
        recorded = commit.get("spec_digest")
        if recorded is None:
            return
        digest = (spec or self.spec()).digest()
        # a checkpoint trained before `steps` was raised (a recorded earlier version, respec.py) continues
        if digest != recorded and recorded not in respec.version_digests(self.store):
            raise RelayError(f"{self.store.url}/{SPEC_KEY} has digest {digest[:16]}..., but checkpoint gen "
                             f"{commit['gen']} was trained with spec {recorded[:16]}...: the run spec was changed "
                             "after the run started; restore the original spec.json, or start a new run in a new store")

    def check_writable(self, need_bytes: int = 0) -> None:
        """Raise StoreError (one line) unless the store takes a write now: a small probe object is written,
        read back and deleted; a store that knows its free space must have `need_bytes` (a checkpoint's size).
        Legs call it before training, so a read-only or full store fails in seconds, not after the leg."""
        key = probe_key(uuid.uuid4().hex)
        token = uuid.uuid4().bytes
        try:
            self.store.write(key, token)
            if self.store.read(key) != token:
                raise StoreError(f"{self.store.url}/{key}: a probe object read back different bytes")
        finally:
            try:
                self.store.delete(key)
            except StoreError:
                pass  # the write already failed and said why
        free = self.store.free_bytes()
        if free is not None and free < need_bytes:
            raise StoreError(f"{self.store.url} has {free / 2**20:.1f} MiB free, a checkpoint needs "
                             f"{need_bytes / 2**20:.1f} MiB; free space or use a larger volume")

    # ----------------------------------------------------------------------------- commits

    def _listing(self) -> tuple[list[int], set[int]]:
        """(every gen with a manifest or tombstone, ascending; the pruned gens) from one listing of baton/."""
        keys = self.store.list(COMMIT_PREFIX)
        gens = sorted(g for g in map(gen_of_commit_key, keys) if g is not None)
        return gens, {g for g in map(gen_of_pruned_key, keys) if g is not None}

    def gens(self) -> list[int]:
        """Gens of every commit present and not pruned (verified or not), ascending."""
        gens, pruned = self._listing()
        return [g for g in gens if g not in pruned]

    def manifest(self, gen: int) -> dict:
        """The checked manifest of `gen`; CorruptCheckpoint if missing or malformed, PrunedCheckpoint if pruned."""
        key = commit_key(gen)
        try:
            raw = self.store.read(key)
        except NotFound:
            raise CorruptCheckpoint(f"{key} is missing") from None
        return check_manifest(raw, gen)

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

    def _pruned_since(self, gen: int) -> bool:
        """True if `gen` was pruned (by another worker, after this one listed it)."""
        return self.store.exists(pruned_key(gen))

    def _newest_usable(self, use):
        """(commit, use(commit)) for the newest commit that `use` accepts, newest first, skipping corrupt and
        malformed ones with a warning. A commit pruned while we read it means newer ones exist: start over on
        the newest (no warning). (None, None) for a run without commits."""
        for _ in range(RESCANS):
            all_gens, pruned = self._listing()
            gens = [g for g in all_gens if g not in pruned]
            self.next_gen = (all_gens[-1] if all_gens else 0) + 1
            for gen in reversed(gens):
                try:
                    commit = self.manifest(gen)
                    self.hooks.before_load(self, commit)
                    return commit, use(commit)
                except PrunedCheckpoint:
                    break  # everything older is pruned too: rescan
                except CorruptCheckpoint as exc:
                    if self._pruned_since(gen):
                        break
                    self._warn(f"checkpoint gen {gen} is unusable: {exc}; falling back to the previous one")
            else:
                if gens:  # commits exist, none usable: never restart silently from step 0
                    raise self._no_usable()
                return None, None
        raise RelayError(f"{self.store.url}: the checkpoint to load was pruned {RESCANS} times in a row by newer "
                         "commits; other workers are running this run: retry the leg")

    def _no_usable(self) -> RelayError:
        return RelayError(f"{self.store.url} has commits but no usable checkpoint (see the warnings above); "
                          f"delete the bad {COMMIT_PREFIX}*.json objects to restart the run from step 0")

    def _verify(self, commit: dict) -> dict:
        """Every object of `commit` verified, and its state.json agreeing with the manifest; returns the state."""
        for name in commit["objects"]:
            if name != "state":
                self._read_verified(commit, name)
        return self._checked_state(commit, self._read_verified(commit, "state"))

    @staticmethod
    def _checked_state(commit: dict, raw) -> dict:
        try:
            state = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise CorruptCheckpoint(f"{commit['objects']['state']['key']} is not JSON") from None
        problem = _state_problem(commit, state)
        if problem:
            raise CorruptCheckpoint(f"{commit_key(commit['gen'])} does not match its objects: {problem}")
        return state

    def latest(self, verify: bool = True) -> dict | None:
        """The newest commit whose manifest is well formed and (verify=True) whose objects verify and agree with
        it. None if the run has no commit yet."""
        return self._newest_usable(self._verify if verify else lambda commit: None)[0]

    def load(self, commit: dict) -> dict:
        """The training state of a commit; raises CorruptCheckpoint if any object fails verification.

        A sharded (torch.distributed.checkpoint) commit gives {"meta": ..., "sharded": commit}: its tensors are
        loaded into the model by `relaytrain_runtime.distributed.load_state`."""
        if commit.get("format") == SHARDED_FORMAT:
            return {"sharded": commit, "meta": {**self.read_state(commit), "gen": commit["gen"]}}
        with ThreadPoolExecutor(3) as pool:  # the objects load in parallel
            raws = {name: pool.submit(self._read_verified, commit, name) for name in OBJECT_NAMES}
            state = self._checked_state(commit, raws["state"].result())
            try:
                weights, opt_tensors = decode(raws["weights"].result()), decode(raws["optimizer"].result())
                optimizer = _unflatten_optimizer(opt_tensors, state.pop("optimizer"))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise CorruptCheckpoint(f"{commit_key(commit['gen'])}: its objects do not decode "
                                        f"({type(exc).__name__})") from None
        return {"weights": weights, "optimizer": optimizer, "meta": {**state, "gen": commit["gen"]}}

    def read_state(self, commit: dict) -> dict:
        """The verified JSON state of a commit (step, metrics, timings, ...) without loading tensors."""
        state = self._checked_state(commit, self._read_verified(commit, "state"))
        state.pop("optimizer", None)
        return state

    def resume(self, spec: RunSpec | None = None) -> tuple[dict | None, dict | None]:
        """(commit, state) of the newest loadable checkpoint, or (None, None) for a fresh run. Refuses a store
        whose spec.json differs from the one the checkpoint was trained with."""
        commit, state = self._newest_usable(self.load)
        if commit is not None:
            self.check_spec(commit, spec)
        return commit, state

    def commit(self, parent_gen: int, state: dict, *, leg_id: str | None = None, gen: int | None = None) -> dict | None:
        """Write a checkpoint's objects, then its manifest with create(). Returns the commit, or None when
        another leg committed this gen first, or it was committed and pruned since (the race is lost; our
        objects are removed)."""
        if gen is None:
            if self.next_gen is None:
                gens = self._listing()[0]
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
        t0 = time.perf_counter()
        objects = {}
        with ThreadPoolExecutor(1) as pool:  # hashing (GIL released) overlaps the writes
            for name, (key, make) in payloads.items():
                parts = make()
                sha = pool.submit(_sha256_parts, parts)
                self.store.write_parts(key, parts)
                objects[name] = {"key": key, "size": sum(len(p) for p in parts), "sha256": sha.result()}
                del parts
                self.hooks.object_written(self, gen, name)
        return self.commit_objects(parent_gen, gen, leg_id, objects, meta, objects["weights"]["sha256"],
                                   save_seconds=time.perf_counter() - t0)

    def commit_objects(self, parent_gen: int, gen: int, leg_id: str, objects: dict, meta: dict,
                       weights_sha256: str | None, save_seconds: float, **extra) -> dict | None:
        """Write the manifest of checkpoint objects already in the store (create-only, last). `extra` goes into
        the manifest (e.g. format="dcp"). Returns the commit, or None when the race is lost (objects removed)."""
        commit = {
            "gen": gen, "parent": parent_gen, "leg_id": leg_id, "created": time.time(), "objects": objects,
            "weights_sha256": weights_sha256,
            **{k: meta.get(k) for k in ("step", "tokens", "loss", "done", "cost_usd", "rng", "spec_digest")},
            **{k: meta[k] for k in ("val_loss", "perplexity") if meta.get(k) is not None},  # evaluated commits
            "data": {"next_step": meta.get("step"), **(meta.get("data") or {})},  # + epoch, position, tokens_seen
            "save_seconds": round(save_seconds, 4), **extra,
        }
        self.hooks.before_manifest(self, gen)
        if not self.store.create(commit_key(gen), (json.dumps(commit, indent=1) + "\n").encode()):
            for obj in objects.values():
                self.store.delete(obj["key"])
            return None
        self.next_gen = gen + 1
        return commit

    def prune(self, keep_last: int, protect: set[int] = frozenset()) -> list[int]:
        """Retire all but the newest `keep_last` commits (keep_last <= 0 keeps all) and delete every checkpoint
        object no kept commit references, up to the newest commit (a failed or lost commit's objects; newer
        ones may be a save in flight). Per pruned gen, in this order: the `.pruned` marker (loaders stop
        choosing it), its manifest replaced by a tombstone (the key never disappears, so it still fences), its
        evaluation record deleted (eval/ refers only to live gens; legs/ records are history and stay).
        Gens in `protect` (the best checkpoint) stay live whatever their age. Returns the gens pruned now."""
        all_gens, already = self._listing()
        live = [g for g in all_gens if g not in already]
        oldest_kept = live[-keep_last] if 0 < keep_last <= len(live) else (live[0] if live else 0)
        pruned = [g for g in live if g < oldest_kept and g not in protect]
        self.hooks.before_prune(self, pruned)
        for gen in pruned:
            self.store.write(pruned_key(gen), b"")
            self.store.write(commit_key(gen), (json.dumps({"gen": gen, "pruned": True}) + "\n").encode())
            self.store.delete(eval_key(gen))
        if all_gens:
            self._sweep(set(all_gens), already | set(pruned))
        return pruned

    def _sweep(self, committed: set[int], retired: set[int]) -> None:
        """Delete checkpoint objects up to the newest committed gen that no live commit references."""
        newest = max(committed)
        by_gen: dict[int, dict[str, list[str]]] = {}
        for key in self.store.list(CKPT_PREFIX):
            gen, leg = gen_of_ckpt_key(key), leg_of_ckpt_key(key)
            if gen is not None and gen <= newest:
                by_gen.setdefault(gen, {}).setdefault(leg, []).append(key)
        for gen, legs in sorted(by_gen.items()):
            winner = None  # whose objects stay: nobody's for a retired gen or one that has no manifest (failed)
            if gen in committed and gen not in retired:
                if len(legs) == 1:
                    winner = next(iter(legs))
                else:  # the winner and a lost or failed commit of the same gen
                    try:
                        winner = self.manifest(gen)["leg_id"]
                    except CorruptCheckpoint:
                        continue  # damaged, or pruned just now: leave it to a later prune
            for leg, keys in legs.items():
                if leg != winner:
                    for key in keys:
                        self.store.delete(key)

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
