"""GCE GPU nodes accrue the job's cost into the baton (the budget stop holds on GCP as on EC2)."""

import subprocess

import pytest

from relaytrain import prices
from relaytrain.blueprint import loads
from relaytrain.gcp.components import startup_script
from relaytrain.plan import node_hourly_usd
from relaytrain.worker import cost_per_second


def test_startup_script_accrues_the_jobs_cost_per_second():
    script = startup_script(checkpoint_every_s=60, nodes=2, gpus_per_node=4, cost_per_second=0.0125)
    assert "--poweroff-when-done --cost-per-second 0.0125" in script
    assert "--cost-per-second" not in startup_script(checkpoint_every_s=60, nodes=1)
    assert subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True).returncode == 0


def test_job_cost_is_every_node_at_the_planners_price():
    bp = loads("name: gce-a3\ncloud: gcp\ntopology: gpu-node\ntraining: {preset: tiny-gpt, steps: 10}\n"
               "gpu: {instance_type: a3-highgpu-8g, nodes: 2, spot: true}\n")
    assert cost_per_second(bp) == 2 * node_hourly_usd(bp) / 3600  # resolve() fills the machine's GPUs
    n1 = loads("name: gce-n1\ncloud: gcp\ntopology: gpu-node\ntraining: {preset: tiny-gpt, steps: 10}\n")
    attached = cost_per_second(n1)  # the defaults: n1-standard-8 with one attached V100
    vm_and_gpu = prices.price("gce.n1-standard-8").usd + prices.price("gce.nvidia-tesla-v100").usd
    assert attached == pytest.approx(vm_and_gpu / 3600)  # the VM plus its attached GPU
