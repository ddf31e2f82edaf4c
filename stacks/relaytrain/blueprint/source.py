"""Read a blueprint's YAML with a line number for every field path and no silent duplicates.

PyYAML's loaders keep the last of two equal keys and forget where each value came from. We
compose the node tree instead and build plain Python data from it ourselves, recording the line
of every key, so each later problem can point at `FILE:LINE`.
"""

from __future__ import annotations

import re

import yaml

FieldPath = tuple  # a field path: ("lambda", "memory_mb") or ("tags", "team")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats without a dot (`3e-4`), which YAML 1.1 leaves as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


class SourceProblem(Exception):
    def __init__(self, line: int, path: FieldPath, message: str):
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


def parse(text: str) -> tuple[object, dict[FieldPath, int], list[SourceProblem]]:
    """YAML text -> (data, {path: line}, problems). Problems are duplicate keys and non-string keys."""
    lines: dict[FieldPath, int] = {(): 1}
    problems: list[SourceProblem] = []
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SourceProblem(line, (), f"not valid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise SourceProblem(1, (), f"not valid YAML: {exc}") from None
    if node is None:
        return None, lines, problems
    constructor = _Loader(text)  # only used to turn scalar nodes into Python values

    def build(node, path: FieldPath):
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append(SourceProblem(line, path, "a key must be a plain name, not a mapping or list"))
                    continue
                key = constructor.construct_object(key_node)
                if not isinstance(key, str):
                    key = str(key) if key is not None else "null"
                    if path == () or path[0] != "tags":
                        problems.append(SourceProblem(line, path + (key,), "a key must be a name (a string)"))
                        continue
                if key in out:
                    problems.append(SourceProblem(
                        line, path + (key,), f"duplicate key {key!r} (first set on line {lines[path + (key,)]}); "
                        "YAML keeps only one of them, so say it once"))
                    continue
                lines[path + (key,)] = line
                out[key] = build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                items.append(build(item, path + (i,)))
            return items
        return constructor.construct_object(node)

    return build(node, ()), lines, problems


def line_of(lines: dict[FieldPath, int], path: FieldPath, fallback: FieldPath = ()) -> int:
    """Line of `path`, or of its nearest ancestor present in the file, or of `fallback`."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return lines.get(fallback, 1)
