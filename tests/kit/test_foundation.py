"""Foundation: dependency separation, the file store's guarantees, the run spec, the CLI shell."""

import json
import subprocess
import sys

import pytest

from relaytrain_runtime import RelayError
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import StoreError, open_store


def _imported(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True).stdout
    return {m.split(".")[0] for m in json.loads(out.strip().splitlines()[-1])}


def test_kit_light_modules_never_import_torch():
    mods = _imported("import relaytrain.cli, relaytrain.blueprint.schema, relaytrain_runtime.spec, "
                     "relaytrain_runtime.store")
    assert "torch" not in mods
    assert "aws_cdk" not in mods and "pulumi" not in mods


def test_runtime_never_imports_iac():
    mods = _imported("import relaytrain_runtime, relaytrain_runtime.cli, relaytrain_runtime.spec")
    assert not {"aws_cdk", "pulumi", "pulumi_gcp", "constructs", "relaytrain"} & mods


def test_file_store_atomic_create_and_listing(tmp_path):
    store = open_store(f"file://{tmp_path}/s")
    assert store.create("a/b.json", b"1") is True
    assert store.create("a/b.json", b"2") is False
    assert store.read("a/b.json") == b"1"
    store.write("a/b.json", b"3")
    assert store.read("a/b.json") == b"3"
    store.write("a/c.bin", b"x" * 10)
    assert store.list("a/") == ["a/b.json", "a/c.bin"]
    # leftovers of an interrupted atomic write are never listed as objects
    (tmp_path / "s" / "a" / ".c.bin.123.tmp").write_bytes(b"partial")
    assert store.list("a/") == ["a/b.json", "a/c.bin"]
    store.delete("a/c.bin")
    store.delete("a/c.bin")
    assert not store.exists("a/c.bin")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b"])
def test_store_rejects_bad_keys(tmp_path, key):
    with pytest.raises(StoreError):
        open_store(str(tmp_path)).write(key, b"")


def test_unsupported_store_scheme():
    with pytest.raises(StoreError, match="unsupported scheme 'ftp'"):
        open_store("ftp://x/y")


def test_run_spec_round_trip_and_digest():
    spec = RunSpec(preset="tiny-bert", steps=10, seed=3)
    again = RunSpec.from_json(spec.to_json())
    assert again == spec and again.digest() == spec.digest()
    assert RunSpec(preset="tiny-bert", steps=11, seed=3).digest() != spec.digest()
    with pytest.raises(RelayError, match="unknown field"):
        RunSpec.from_dict({**spec.to_dict(), "nope": 1})
    with pytest.raises(RelayError, match="unknown 'gpt5'"):
        RunSpec(preset="gpt5")


def test_cli_unknown_verb_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown verb 'frobnicate'" in proc.stderr


def test_run_spec_numbers_normalise_to_one_digest():
    """Workflows, YAML and Pulumi may send 1 or 1.0 for the same field: same run, same digest."""
    base = RunSpec(preset="tiny-gpt", steps=10, lr=1.0, batch_size=4)
    sent = {**base.to_dict(), "lr": 1, "steps": 10.0, "batch_size": 4.0}
    assert RunSpec.from_dict(sent).digest() == base.digest()
    with pytest.raises(RelayError, match="steps: expected a whole number"):
        RunSpec.from_dict({**base.to_dict(), "steps": 10.5})
