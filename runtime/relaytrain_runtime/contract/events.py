"""The event schema every handler accepts: one error type, one field validator, one error document.

    field(event, "max_steps", int, minimum=1)          -> the value, the default, or BadEvent
    settings_field(event, "spec", RunSpec)             -> a dict whose values have the dataclass's field types
    error(exc, op)                                     -> {"error": {"type", "message", "op"}}

Messages name the field and the accepted form: `event field 'max_steps' must be int, got str 'ten'`.
Numbers must be finite (a NaN deadline, time limit or cost would silently disable a check), and a
bool is never an int. Pure Python; no torch.
"""

from __future__ import annotations

import dataclasses
import math

from relaytrain_runtime import RelayError


class BadEvent(RelayError):
    """The event is not one this handler can serve (retrying the same event cannot help)."""


def error(exc: BaseException, op: str | None) -> dict:
    """The one error document: what handlers return for an event they cannot serve."""
    return {"error": {"type": type(exc).__name__, "message": str(exc), "op": op}}


def _kind_names(kinds: tuple) -> str:
    return " or ".join(k.__name__ for k in kinds)


def check_value(name: str, value, kinds: tuple, *, minimum=None, maximum=None, where: str = "event field"):
    """`value` checked against `kinds` (bool is not an int; a float may be given as an int), finiteness
    and bounds; returns it or raises BadEvent naming `where` and `name`."""
    if float in kinds and int not in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise BadEvent(f"{where} {name!r} must be {_kind_names(kinds)}, got {type(value).__name__} {value!r:.80}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadEvent(f"{where} {name!r} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadEvent(f"{where} {name!r} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise BadEvent(f"{where} {name!r} must be <= {maximum}, got {value!r}")
    return value


def field(event: dict, name: str, kind: type | tuple, default=None, *, required: bool = False, minimum=None,
          maximum=None):
    """`event[name]` checked against `kind` (and `minimum`/`maximum`), or `default` when absent or null."""
    if name not in event or event[name] is None:
        if required:
            raise BadEvent(f"event field {name!r} is required")
        return default
    return check_value(name, event[name], kind if isinstance(kind, tuple) else (kind,), minimum=minimum,
                       maximum=maximum)


_TYPES = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,)}


def settings_field(event: dict, name: str, settings_cls) -> dict | None:
    """`event[name]`, a settings object (the run spec, the functions config) whose values must have the
    types of `settings_cls`'s dataclass fields; unknown keys are left to the class to judge. Wrong types
    are a BadEvent here, so they never reach the class's own checks as a TypeError; whole floats pass
    for int fields."""
    value = field(event, name, dict)
    if value is None:
        return None
    types = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in dataclasses.fields(settings_cls)}
    for key, item in value.items():
        kinds = _TYPES.get(types.get(key, ""))
        if kinds == (int,) and isinstance(item, float) and item.is_integer():
            continue  # JSON producers (Workflows, YAML, Pulumi) send 2 and 2.0 alike; the class normalises
        if kinds is not None:
            check_value(f"{name}.{key}", item, kinds)
    return value
