"""Read a blueprint's YAML with a line number for every field path and no silent duplicates.

PyYAML's loaders keep the last of two equal keys and forget where each value came from. We
compose the node tree instead and build plain Python data from it ourselves, recording the line
of every key, so each later problem can point at `FILE:LINE`.

Hostile documents are refused before they are composed, each with one line: files over MAX_BYTES,
nesting deeper than MAX_DEPTH, and documents that would expand (through aliases) to more than
MAX_VALUES values. The check walks PyYAML's event stream, which needs no recursion and no expansion.
"""

from __future__ import annotations

import os
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


MAX_BYTES = 1 << 20  # a blueprint is a few KB
MAX_DEPTH = 64  # mappings and lists inside each other (a blueprint needs 4)
MAX_VALUES = 100_000  # values after alias expansion (a blueprint has about 100)


def format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


class SourceProblem(Exception):
    def __init__(self, line: int, path: FieldPath, message: str):
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


def read_text(path: str | os.PathLike) -> str:
    """The file's text, refusing one over MAX_BYTES before reading it (OSError/UnicodeDecodeError propagate)."""
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise SourceProblem(1, (), f"the file is {size:,} bytes; a blueprint is at most {MAX_BYTES:,} bytes")
    with open(path, encoding="utf-8") as fh:
        return fh.read()


_EVENTS = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present: linear in nesting


def _check_shape(text: str) -> None:
    """Refuse (SourceProblem) a document nested deeper than MAX_DEPTH, with a recursive alias, or expanding to
    more than MAX_VALUES values, from the event stream alone: each frame counts the values under it, each
    anchor remembers the size of what it names, and an alias adds that size."""
    if len(text) > MAX_BYTES:
        raise SourceProblem(1, (), f"the document is {len(text):,} characters; a blueprint is at most "
                                   f"{MAX_BYTES:,} bytes")
    deep = f"nested more than {MAX_DEPTH} levels deep; a blueprint needs a few"
    sizes: dict[str, int] = {}
    stack: list[list] = [[0, None]]  # [values so far, anchor] per open collection
    try:
        for event in yaml.parse(text, Loader=_EVENTS):
            line = event.start_mark.line + 1
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) > MAX_DEPTH:
                    raise SourceProblem(line, (), deep)
                stack.append([0, event.anchor])
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                count, anchor = stack.pop()
                size = count + 1
            elif isinstance(event, yaml.AliasEvent):
                if any(frame[1] == event.anchor for frame in stack):
                    raise SourceProblem(line, (), f"alias *{event.anchor} refers to a value that contains it; "
                                                  "a blueprint cannot be recursive")
                size, anchor = sizes.get(event.anchor, 1), None
            elif isinstance(event, yaml.ScalarEvent):
                size, anchor = 1, event.anchor
            else:
                continue
            if anchor is not None:
                sizes[anchor] = size
            stack[-1][0] += size
            if stack[-1][0] > MAX_VALUES:
                raise SourceProblem(line, (), f"the document expands to more than {MAX_VALUES:,} values (YAML "
                                              "aliases repeat what they name); write the values out")
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):  # libyaml's own bound (1,000) met while scanning ahead
            raise SourceProblem((exc.problem_mark.line + 1) if exc.problem_mark else 1, (), deep) from None
        # any other syntax error is reported by the composing parser below, with its own line


def parse(text: str) -> tuple[object, dict[FieldPath, int], list[SourceProblem]]:
    """YAML text -> (data, {path: line}, problems). Problems are duplicate keys and non-string keys."""
    lines: dict[FieldPath, int] = {(): 1}
    problems: list[SourceProblem] = []
    try:
        _check_shape(text)
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
