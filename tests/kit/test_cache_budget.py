"""`cache.max_gb`: validated, and translated once (relaytrain.worker.cache_environment) into the budget every
worker's shard cache keeps (RELAYTRAIN_CACHE_BUDGET_MB, relaytrain_runtime.store.cache.cache_budget)."""

import subprocess
import sys

import pytest

from relaytrain.blueprint import BlueprintError, loads
from relaytrain.worker import cache_environment, node_environment
from relaytrain_runtime.store.cache import BUDGET_ENV, cache_budget

STEPS = "name: cached\ncloud: aws\ntopology: lambda-steps\nlambda: {ephemeral_mb: 2048}\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(BlueprintError) as err:
        loads(text, "bp.yaml")
    return err.value.problems


def test_max_gb_is_checked_with_the_limit():
    (negative,) = _problems(STEPS + "cache: {max_gb: -1}\n")
    assert negative.startswith("bp.yaml:5: cache.max_gb: must be >= 0")
    (tmp,) = _problems(STEPS + "cache: {max_gb: 3}\n")  # no EFS: the shards live in the Lambda's /tmp
    assert tmp.startswith("bp.yaml:5: cache.max_gb: 3 GB does not fit the Lambda's /tmp") and "2,048 MB" in tmp
    assert loads(STEPS + "cache: {max_gb: 1.5}\n").cache.max_gb == 1.5
    assert loads(STEPS + "cache: {enabled: true, max_gb: 100}\n").cache.max_gb == 100  # EFS: any size


def test_max_gb_becomes_every_workers_cache_budget(monkeypatch, tmp_path):
    bp = loads(STEPS + "cache: {max_gb: 1.5}\n")
    assert cache_environment(bp) == {BUDGET_ENV: "1536"}
    gpu = loads("name: node\ncloud: gcp\ntopology: gpu-node\ncache: {max_gb: 8}\n")
    assert node_environment(gpu) == {BUDGET_ENV: "8192"}
    assert cache_environment(loads(STEPS)) == {}  # unset: the cache's filesystem decides
    monkeypatch.setenv(BUDGET_ENV, cache_environment(bp)[BUDGET_ENV])
    assert cache_budget(tmp_path) == 1536 * 2**20  # what the runtime reads back


@pytest.mark.parametrize("module", ["relaytrain.worker", "relaytrain.blueprint.dataset", "relaytrain.plan",
                                    "relaytrain.blueprint.validate", "relaytrain.localrun", "relaytrain.cli"])
def test_each_kit_module_imports_first_in_a_fresh_interpreter(module):
    """No import cycle: relaytrain.worker imported first failed once (worker -> blueprint -> dataset -> worker)."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
