"""Blueprints: schema, loading with line numbers, validation against platform limits.

    load(path) -> Blueprint              one file, defaults resolved; BlueprintError lists every problem
    load_all(paths) -> list[Blueprint]   every file checked before any result is returned
    (deployed=True: the workers run in the cloud, so what only this machine can reach is refused)
    catalog_files() -> list[Path]        blueprints/*.yaml of this checkout

Each problem reads `FILE:LINE: path.to.field: what is wrong (limit or expected form)`.
"""

from __future__ import annotations

import difflib
import pathlib
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from relaytrain.blueprint.schema import Blueprint
from relaytrain.blueprint.source import SourceProblem, format_path, line_of, parse, read_text
from relaytrain.blueprint.validate import check, resolve
from relaytrain_runtime import RelayError

__all__ = ["Blueprint", "BlueprintError", "catalog_files", "load", "load_all", "loads"]

CATALOG = pathlib.Path(__file__).resolve().parents[3] / "blueprints"


class BlueprintError(RelayError):
    """One or more problems in blueprint files; str() is all of them, one `FILE:LINE: path: message` per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def catalog_files() -> list[pathlib.Path]:
    return sorted(CATALOG.glob("*.yaml"))


def load(path: str | pathlib.Path, deployed: bool = False) -> Blueprint:
    path = pathlib.Path(path)
    try:
        text = read_text(path)
    except SourceProblem as exc:
        raise BlueprintError([f"{path}:{exc.line}: (file): {exc.message}"]) from None
    except FileNotFoundError:
        raise BlueprintError([f"{path}:1: (file): no such blueprint file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlueprintError([f"{path}:1: (file): cannot read it ({exc})"]) from None
    return loads(text, str(path), deployed)


def load_all(paths: Iterable[str | pathlib.Path], deployed: bool = False) -> list[Blueprint]:
    out, problems = [], []
    for path in paths:
        try:
            out.append(load(path, deployed))
        except BlueprintError as exc:
            problems += exc.problems
    if problems:
        raise BlueprintError(problems)
    return out


def loads(text: str, filename: str = "<blueprint>", deployed: bool = False) -> Blueprint:
    """Parse and validate blueprint YAML text; `filename` is used in the messages."""
    try:
        data, lines, source_problems = parse(text)
    except SourceProblem as exc:
        raise BlueprintError([f"{filename}:{exc.line}: (file): {exc.message}"]) from None
    problems = [(p.line, format_path(p.path), p.message) for p in source_problems]
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        problems.append((1, "(top)", f"the file is {what}; expected a mapping with at least name, cloud and topology"))
        raise BlueprintError([f"{filename}:{line}: {path}: {msg}" for line, path, msg in problems])
    try:
        bp = Blueprint.model_validate(data, strict=True)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append((line_of(lines, loc), format_path(loc), _schema_message(err, loc)))
    else:
        if not problems:
            bp = resolve(bp)
            for loc, msg in check(bp, deployed):
                problems.append((line_of(lines, loc, fallback=("topology",)), format_path(loc), msg))
    if problems:
        problems.sort(key=lambda p: p[0])
        raise BlueprintError([f"{filename}:{line}: {path}: {msg}" for line, path, msg in problems])
    return bp


_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
          "dict": "a mapping", "model": "a mapping"}


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Blueprint
    for part in loc:
        if model is None:
            return None
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        field = fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = candidates[0] if candidates else None
    return model


def _describe(value) -> str:
    text = repr(value)
    return (text if len(text) <= 40 else text[:37] + "...") + f" ({type(value).__name__})"


def _schema_message(err: dict, loc: tuple) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        names = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {loc[-1]!r} ({hint}accepted: {', '.join(names)})"
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        return f"{err['msg'].replace('Input should be', 'must be')}, got {_describe(err['input'])}"
    base = kind.split("_")[0]
    if base in _TYPES and kind.endswith(("_type", "_parsing")):
        if base == "model" or kind == "dict_type":
            return f"expected a mapping of settings, got {_describe(err['input'])}"
        return f"expected {_TYPES[base]}, got {_describe(err['input'])}"
    if kind == "finite_number":
        return f"expected a finite number, got {_describe(err['input'])}"
    if kind == "int_from_float":
        return f"expected an integer, got {_describe(err['input'])}"
    return f"{err['msg']}, got {_describe(err.get('input'))}"
