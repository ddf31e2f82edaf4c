"""The store layout has one home: relaytrain_runtime/contract/keys.py. No other module of the kit or the
runtime spells a store key: every string constant (docstrings aside) that starts with one of the
contract's key literals (`baton/`, `legs/`, `spec.json`, `report/summary.json`, ...) is a failure."""

import ast
import pathlib

from relaytrain_runtime.contract import keys
from tests.conftest import ROOT

CONTRACT = ROOT / "runtime" / "relaytrain_runtime" / "contract"
# Bucket layouts that share a spelling with a run-store key but are not one: the kit's prefix of the
# datasets shared by runs (BUCKET/data/NAME; a dataset's own keys then are data/manifest.json, ...).
NOT_STORE_KEYS = {("stacks/relaytrain/worker.py", "data/")}


def key_literals() -> list[str]:
    constants = {name: v for name, v in vars(keys).items() if name.isupper() and isinstance(v, str)}
    return sorted({v for name, v in constants.items() if "/" in v or name.endswith("_KEY")}, key=len, reverse=True)


def docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def store_key_literals(path: pathlib.Path, literals: list[str], root: pathlib.Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    rel = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            hit = next((lit for lit in literals if node.value.startswith(lit)), None)
            if hit and (rel, hit) not in NOT_STORE_KEYS:
                found.append(f"{rel}:{node.lineno}: {node.value!r} (use relaytrain_runtime.contract.keys)")
    return found


def test_the_contract_defines_the_literals_this_test_looks_for():
    literals = key_literals()
    for expected in ("baton/", "legs/", "ckpt/", "eval/", "spec.json", "shards.json", "report/summary.json",
                     "inner/", "rounds/", "metrics/"):
        assert expected in literals


def test_a_store_key_literal_is_found(tmp_path):
    """The scan itself works: a module spelling `legs/` and `spec.json` is reported, its docstring is not."""
    module = tmp_path / "sample.py"
    module.write_text('"""Mentions baton/ in prose."""\nA = "legs/"\nB = f"{A}x" + "spec.json"\n')
    found = store_key_literals(module, key_literals(), root=tmp_path)
    assert [f.split(":")[1] for f in found] == ["2", "3"], found


def test_no_store_key_literal_outside_the_contract():
    literals = key_literals()
    found = []
    for root in ("stacks", "runtime"):
        for path in sorted((ROOT / root).rglob("*.py")):
            if CONTRACT in path.parents:
                continue
            found += store_key_literals(path, literals)
    assert not found, "\n".join(found)
