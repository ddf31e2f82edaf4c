"""Handlers served by their real runtimes: awslambdaric against a local Runtime API, and
functions-framework over HTTP, both on 127.0.0.1. Bad events get a structured error."""

import sys
import time

import pytest

from relaytrain_runtime import pricing
from relaytrain_runtime.handlers import ops
from tests.fixtures.servers import functions_server, lambda_runtime, post_json

LAMBDA_HANDLER = "relaytrain_runtime.handlers.aws_lambda.handler"

BAD_EVENTS = [
    ("not an object", "event must be a JSON object"),
    ({}, "event field 'store' is required"),
    ({"store": 42}, "event field 'store' must be str"),
    ({"store": "file:///tmp/x", "op": "train-everything"}, "unknown op 'train-everything'"),
    ({"store": "file:///tmp/x", "op": "leg", "max_steps": "ten"}, "event field 'max_steps' must be int"),
    ({"store": "file:///tmp/x", "op": "leg", "max_steps": 0}, "event field 'max_steps' must be >= 1"),
    ({"store": "ftp://host/x"}, "unsupported scheme 'ftp'"),
]


@pytest.fixture(scope="module")
def gcf_source(tmp_path_factory):
    src = tmp_path_factory.mktemp("gcf") / "main.py"
    src.write_text("from relaytrain_runtime.handlers.gcf import relaytrain_http  # noqa: F401\n")
    return src


def test_run_op_rejects_bad_events_in_process():
    for event, message in BAD_EVENTS[:-1]:
        result = ops.run_op(event, time.time() + 60)
        assert set(result) == {"error"}, event
        assert message in result["error"]["message"], (event, result)
        assert result["error"]["type"] == "BadEvent"
    late = ops.run_op({"store": "file:///tmp/x"}, time.time() - 1)
    assert "deadline already passed" in late["error"]["message"]


def test_missing_op_module_is_a_structured_error():
    """An op whose module is not in this runtime (e.g. shards not installed) answers, not crashes."""
    ops.OPS["ghost"] = "relaytrain_runtime.no_such_module:op"
    try:
        result = ops.run_op({"store": "file:///tmp/x", "op": "ghost"}, time.time() + 60)
    finally:
        del ops.OPS["ghost"]
    assert result["error"]["type"] == "BadEvent"
    assert "op 'ghost' is not available in this runtime (relaytrain_runtime.no_such_module is missing)" \
        == result["error"]["message"]
    ops.OPS["ghost"] = "relaytrain_runtime.handlers.ops:no_such_function"
    try:
        result = ops.run_op({"store": "file:///tmp/x", "op": "ghost"}, time.time() + 60)
    finally:
        del ops.OPS["ghost"]
    assert result["error"]["message"].endswith("(relaytrain_runtime.handlers.ops:no_such_function is missing)")


def test_lambda_bad_events_through_awslambdaric():
    with lambda_runtime(LAMBDA_HANDLER) as runtime:
        for event, message in BAD_EVENTS:
            ok, result = runtime.invoke(event, timeout_s=60)
            assert ok, result  # answered by the handler, not Lambda's error document
            assert message in result["error"]["message"], (event, result)
        # the same process keeps serving: no crash loop
        ok, result = runtime.invoke({"store": "file:///tmp/x", "op": "nope"}, timeout_s=60)
        assert ok and result["error"]["op"] == "nope"
        assert runtime.proc.poll() is None


def test_lambda_deadline_comes_from_context():
    """With less time left than the margin, the handler refuses to start a leg."""
    with lambda_runtime(LAMBDA_HANDLER, env={"RELAYTRAIN_MARGIN_S": "30"}) as runtime:
        ok, result = runtime.invoke({"store": "file:///tmp/x"}, timeout_s=10)
        assert ok and "deadline already passed" in result["error"]["message"]


def test_lambda_missing_handler_gives_lambda_error_document():
    with lambda_runtime("relaytrain_runtime.handlers.aws_lambda.no_such_handler") as runtime:
        ok, doc = runtime.invoke({"store": "file:///tmp/x"}, timeout_s=60)
    assert not ok
    assert doc["errorType"] == "Runtime.HandlerNotFound"


def test_gcf_bad_events_over_http(gcf_source):
    with functions_server("relaytrain_http", gcf_source, env={"RELAYTRAIN_TIMEOUT_S": "60"}) as url:
        for event, message in BAD_EVENTS:
            status, result = post_json(url, event)
            assert status == 400, (event, status, result)
            assert message in result["error"]["message"], (event, result)
        status, result = post_json(url, None)
        assert status == 400 and "request body must be a JSON object" in result["error"]["message"]


def test_gcf_misconfigured_environment_is_500(gcf_source):
    with functions_server("relaytrain_http", gcf_source, env={"RELAYTRAIN_VCPU": "lots"}) as url:
        status, result = post_json(url, {"store": "file:///tmp/x"})
    assert status == 500
    assert result["error"]["message"] == "environment variable RELAYTRAIN_VCPU='lots' must be a number"


def test_prices():
    # Lambda bills GB = MB / 1024 (AWS's own example: 128 MB = 0.125 GB), so 10,240 MB for 900 s
    # is 9,000 GB-s = $0.15 (PLATFORM_FACTS' "9,216 GB-s = $0.154" divides by 1000).
    assert pricing.lambda_cost_per_second(128) == pytest.approx(0.125 * 0.0000166667)
    assert pricing.lambda_cost_per_second(10240) * 900 == pytest.approx(0.15, rel=1e-5)
    assert pricing.lambda_cost_per_second(1024, "arm64") == pytest.approx(0.0000133334)
    assert pricing.gcf_cost_per_second(4, 16) == pytest.approx(4 * 0.000024 + 16 * 0.0000025)
    assert pricing.instance_cost_per_second("p3.2xlarge") * 3600 * 96 == pytest.approx(293.76)
    with pytest.raises(ValueError, match="expected one of"):
        pricing.lambda_cost_per_second(1024, "sparc")


def test_handlers_import_no_torch():
    import subprocess

    code = ("import sys, relaytrain_runtime.handlers.aws_lambda, relaytrain_runtime.handlers.gcf, "
            "relaytrain_runtime.pricing, relaytrain_runtime.store.s3, relaytrain_runtime.store.gcs, "
            "relaytrain_runtime.store.cache; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
