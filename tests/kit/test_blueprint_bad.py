"""Malformed blueprints: each names its exact line and field path, and nothing is written anywhere.

Every file in tests/kit/bad_blueprints/ starts with `# expect: LINE PATH | TEXT`: loading it must raise a
BlueprintError with a problem `FILE:LINE: PATH: ...TEXT...`.
"""

import os
import pathlib
import re

import pytest

from relaytrain.blueprint import BlueprintError, load
from relaytrain.cli import main

BAD = sorted((pathlib.Path(__file__).parent / "bad_blueprints").glob("*.yaml"))


def _expect(path: pathlib.Path) -> tuple[int, str, str]:
    line, field, text = re.match(r"# expect: (\d+) (\S+) \| (.*)", path.read_text().splitlines()[0]).groups()
    return int(line), field, text


def test_there_are_at_least_forty():
    assert len(BAD) >= 40


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_blueprint_names_line_and_field(path):
    line, field, text = _expect(path)
    with pytest.raises(BlueprintError) as err:
        load(path)
    prefix = f"{path}:{line}: {field}: "
    matching = [p for p in err.value.problems if p.startswith(prefix)]
    assert matching, f"no problem starts with {prefix!r}: {err.value.problems}"
    assert any(text in p for p in matching), err.value.problems
    assert all("\n" not in p for p in err.value.problems)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_blueprint_writes_nothing(path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    for argv in (["validate", str(path)], ["plan", str(path)], ["plan", "--compare", str(path), str(BAD[0])],
                 ["run", str(path), "--local", "--store", f"file://{store}"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{path}:" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []
