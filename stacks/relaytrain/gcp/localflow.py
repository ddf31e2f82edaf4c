"""Run a generated Cloud Workflows definition on this machine, step by step.

A small interpreter for the subset of the Workflows language that `relaytrain.gcp.workflow` generates: `assign`,
`parallel` `for` over a `range` (with `shared` variables), jumps (`next`), `call: http.post` inside `try` with a
`retry` policy, `switch` with `return` / `raise` / `next` / `steps`, subworkflows (the retry predicate), and `${...}`
expressions over variables, `default`, `map.get`, `string`, `in`, arithmetic and comparisons. It lets the tests (and a
user without a cloud account) drive the real handler over HTTP through exactly the steps the deployed workflow takes.
Expressions come only from our own generator.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TRANSIENT = (429, 502, 503, 504)


class WorkflowError(Exception):
    """The workflow raised (a `raise` step, a handler error, or an HTTP failure after retries)."""

    def __init__(self, value: Any):
        super().__init__(json.dumps(value) if not isinstance(value, str) else value)
        self.value = value


class HttpError(Exception):
    def __init__(self, code: int, body: Any):
        super().__init__(f"HTTP {code}")
        self.code, self.body = code, body


class _Obj(dict):
    """A map whose keys read as attributes, like `result.body.done` in Workflows expressions."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise WorkflowError({"code": "KeyError", "message": f"key not found: {key}"}) from None


def _wrap(value):
    if isinstance(value, dict):
        return _Obj({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class _Branch(dict):
    """A parallel branch's variables: a copy of the parent's, except `shared` ones write through."""

    def __init__(self, parent: dict, shared: set, lock: threading.Lock):
        super().__init__(parent)
        self.parent, self.shared, self.lock = parent, shared, lock

    def __setitem__(self, key, value):
        if key in self.shared:
            with self.lock:
                self.parent[key] = value
        super().__setitem__(key, value)


class _Map:
    @staticmethod
    def get(m, key):
        return m.get(key) if isinstance(m, dict) else None


class _Http:
    @staticmethod
    def default_retry_predicate(e) -> bool:
        return bool({"ConnectionError", "ConnectionFailedError", "TimeoutError"} & set(e["tags"])) \
            or e.get("code") in TRANSIENT


def error_map(err: Exception) -> dict:
    """An exception as Workflows presents it to `except` and retry predicates."""
    if isinstance(err, HttpError):
        return {"code": err.code, "tags": ["HttpError"], "message": str(err), "body": err.body}
    if isinstance(err, TimeoutError):
        tag = "TimeoutError"
    elif isinstance(err, ConnectionRefusedError):
        tag = "ConnectionFailedError"  # the connection was never established
    else:
        tag = "ConnectionError"
    return {"tags": [tag], "message": str(err)}


_EXPR = re.compile(r"^\$\{(.*)\}$", re.S)
_LITERALS = {"null": "None", "true": "True", "false": "False"}


def evaluate(value: Any, scope: dict) -> Any:
    if isinstance(value, str):
        m = _EXPR.match(value)
        if not m:
            return value
        expr = re.sub(r'("(?:[^"\\]|\\.)*")|\b(null|true|false)\b',
                      lambda g: g.group(1) or _LITERALS[g.group(2)], m.group(1))
        names = {"default": lambda a, b: b if a is None else a, "map": _Map, "http": _Http, "string": str,
                 **scope}
        return _wrap(eval(expr, {"__builtins__": {}}, names))  # noqa: S307 - our generator's expressions only
    if isinstance(value, dict):
        return {k: evaluate(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, scope) for v in value]
    return value


def http_post(url: str, body: dict, timeout: float, headers: dict | None = None) -> tuple[int, Any]:
    """POST JSON; return (status, parsed body). Used when no `post` is given to `run`."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, ConnectionError)):
            raise exc.reason from exc
        raise ConnectionError(str(exc.reason)) from exc


class Interpreter:
    def __init__(self, post: Callable[[str, dict, float], tuple[int, Any]] = http_post,
                 sleep: Callable[[float], None] = time.sleep, url_map: Callable[[str], str] = lambda u: u):
        self.post, self.sleep, self.url_map = post, sleep, url_map
        self.calls: list[tuple[str, dict]] = []  # (url, body) of every request, for inspection

    def run(self, workflow: dict, args: dict | None = None) -> Any:
        self.subworkflows = {name: self._callable(sub) for name, sub in workflow.items() if name != "main"}
        return self._callable(workflow["main"])(_wrap(args or {}))

    def _callable(self, sub: dict) -> Callable:
        def call(*values):
            # not strict: as in Workflows, a `main` without params ignores the run's arguments
            scope = {**self.subworkflows, **dict(zip(sub.get("params", []), values, strict=False))}
            return self._steps(sub["steps"], scope)

        return call

    # -- steps -----------------------------------------------------------------------------
    def _steps(self, steps: list[dict], scope: dict) -> Any:
        index = {next(iter(s)): i for i, s in enumerate(steps)}
        i = 0
        while i < len(steps):
            name, body = next(iter(steps[i].items()))
            outcome, value = self._step(body, scope)
            if outcome == "return":
                return value
            if outcome == "next":
                if value == "end":
                    return None
                if value not in index:
                    raise WorkflowError({"code": "BadNext", "message": f"step {name}: no step {value!r} here"})
                i = index[value]
                continue
            i += 1
        return None

    def _step(self, body: dict, scope: dict) -> tuple[str, Any]:
        if "assign" in body:
            for item in body["assign"]:
                (key, expr), = item.items()
                scope[key] = evaluate(expr, scope)
        elif "parallel" in body:
            self._parallel(body["parallel"], scope)
        elif "try" in body:
            self._try(body["try"], body.get("retry"), scope)
        elif "call" in body:
            self._call(body, scope)
        elif "switch" in body:
            for case in body["switch"]:
                if evaluate(case["condition"], scope):
                    return self._step({k: v for k, v in case.items() if k != "condition"}, scope)
        elif "steps" in body:
            value = self._steps(body["steps"], scope)
            if value is not None:
                return "return", value
        if "raise" in body:
            raise WorkflowError(evaluate(body["raise"], scope))
        if "return" in body:
            return "return", evaluate(body["return"], scope)
        if "next" in body:
            return "next", body["next"]
        return "continue", None

    def _parallel(self, spec: dict, scope: dict) -> None:
        loop = spec["for"]
        lo, hi = (evaluate(x, scope) for x in loop["range"])

        shared, lock = set(spec.get("shared", [])), threading.Lock()

        def branch(k: int) -> None:
            local = _Branch(scope, shared, lock)  # variables assigned in a branch stay in it, unless shared
            local[loop["value"]] = k
            self._steps(loop["steps"], local)

        with ThreadPoolExecutor(max_workers=max(1, hi - lo + 1)) as pool:
            for future in [pool.submit(branch, k) for k in range(lo, hi + 1)]:
                future.result()  # the first branch error stops the workflow, as unhandled errors do

    def _try(self, body: dict, retry: dict | None, scope: dict) -> None:
        attempts = 1 + (retry or {}).get("max_retries", 0)
        backoff = (retry or {}).get("backoff", {})
        delay = backoff.get("initial_delay", 1)
        for attempt in range(attempts):
            try:
                return self._call(body, scope)
            except (HttpError, ConnectionError, TimeoutError) as err:
                if attempt + 1 == attempts or not evaluate(retry["predicate"], scope)(_wrap(error_map(err))):
                    raise WorkflowError(error_map(err)) from err
                self.sleep(delay)
                delay = min(delay * backoff.get("multiplier", 2), backoff.get("max_delay", 60))

    def _call(self, body: dict, scope: dict) -> None:
        if body["call"] != "http.post":
            raise WorkflowError({"code": "Unsupported", "message": f"call {body['call']!r}"})
        args = evaluate(body["args"], scope)
        url = self.url_map(args["url"])
        self.calls.append((url, args["body"]))
        try:
            code, payload = self.post(url, json.loads(json.dumps(args["body"])), float(args.get("timeout", 300)))
        except (TimeoutError, ConnectionError):
            raise
        except OSError as exc:  # other socket failures
            raise ConnectionError(str(exc)) from exc
        if not 200 <= code < 300:
            raise HttpError(code, payload)
        if "result" in body:
            scope[body["result"]] = _wrap({"code": code, "body": payload})
