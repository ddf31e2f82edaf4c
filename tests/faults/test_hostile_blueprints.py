"""Hostile documents: blueprint loading bounds alias expansion, nesting depth and file size, each refused with
one clear line (no RecursionError, no MemoryError); AWS tags are checked against AWS's character set and
lengths; two blueprints with one name in one synthesis are named clearly before anything is written."""

import pathlib
import subprocess
import sys

import pytest

from relaytrain.blueprint import BlueprintError, load, loads
from relaytrain.blueprint.source import MAX_BYTES, MAX_DEPTH, MAX_VALUES

CATALOG = pathlib.Path(__file__).resolve().parents[2] / "blueprints"
DEMO = CATALOG / "tiny-gpt-lambda-steps.yaml"


def _refused(text: str) -> str:
    with pytest.raises(BlueprintError) as info:
        loads(text, "hostile.yaml")
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def _alias_bomb() -> str:
    names = "abcdefghi"
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\nname: bomb\n"


def test_alias_bomb_is_refused_without_expanding_it():
    line = _refused(_alias_bomb())  # 9**9 (387 million) values if expanded; refused from the event stream
    assert line.startswith("hostile.yaml:") and f"expands to more than {MAX_VALUES:,} values" in line


def test_recursive_alias_is_refused():
    assert "cannot be recursive" in _refused("name: x\ntags: &t {a: *t}\n")


@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block"])
def test_deep_nesting_is_refused_without_recursion_error(style):
    depth = 5000
    if style == "flow-list":
        text = "name: x\nv: " + "[" * depth + "]" * depth + "\n"
    elif style == "flow-map":
        text = "name: x\nv: " + "{a: " * depth + "1" + "}" * depth + "\n"
    else:
        text = "name: x\n" + "".join("  " * i + "a:\n" for i in range(200))  # block nesting grows quadratically
    assert f"nested more than {MAX_DEPTH} levels deep" in _refused(text)


def test_oversized_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "w") as fh:
        fh.write("name: x\ndescription: " + "y" * (MAX_BYTES + 10) + "\n")
    with pytest.raises(BlueprintError) as info:
        load(big)
    assert info.value.problems == [f"{big}:1: (file): the file is {big.stat().st_size:,} bytes; a blueprint is at "
                                   f"most {MAX_BYTES:,} bytes"]
    assert "at most" in _refused("name: x\ndescription: " + "y" * (MAX_BYTES + 10) + "\n")


def test_the_catalog_still_loads():
    assert {load(path).name for path in CATALOG.glob("*.yaml")}


def _with_tags(tags: str) -> str:
    text = DEMO.read_text()
    assert "\ntags:\n  project: relaytrain\n" in text
    return text.replace("\ntags:\n  project: relaytrain\n", "\ntags:\n" + tags)


@pytest.mark.parametrize("tags,needle", [
    ("  team: a;b\n", "AWS tag values take only letters, digits, spaces and _ . : / = + - @; ';' is not allowed"),
    ("  team: $(whoami)\n", "'$' '(' ')' is not allowed"),
    ("  'te{am}': x\n", "AWS tag keys take only"),
    ("  aws:owner: me\n", "not starting with 'aws:'"),
    ("  team: " + "v" * 257 + "\n", "AWS tag values are at most 256 characters, got 257"),
    ("  " + "k" * 129 + ": v\n", "AWS tag keys are 1-128 characters"),
])
def test_aws_tags_outside_the_character_set_or_lengths_are_refused(tags, needle):
    line = _refused(_with_tags(tags))
    assert line.startswith("hostile.yaml:") and ": tags." in line and needle in line, line


def test_aws_tags_in_any_language_and_allowed_punctuation_load():
    bp = loads(_with_tags("  équipe: Zürich team_1 a.b:c/d=e+f-g@h\n  cost-center: '42'\n"), "ok.yaml")
    assert bp.tags["équipe"] == "Zürich team_1 a.b:c/d=e+f-g@h"


def test_duplicate_blueprint_names_in_one_synthesis_are_named(tmp_path):
    copy = tmp_path / "copy-of-demo.yaml"
    copy.write_text(DEMO.read_text())
    out = tmp_path / "review"
    proc = subprocess.run([sys.executable, "-m", "relaytrain", "synth", str(DEMO), str(copy), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{copy}:9: name: 'tiny-gpt-lambda-steps' is also the name of {DEMO}:9" in lines[0]
    assert not out.exists()  # nothing written
