"""Run settings have one source: the runtime's RunSpec and ShardsConfig. The blueprint schema is derived
from their fields, validation is their own check, and that check returns (field, message) pairs."""

import dataclasses
import json
import math
import subprocess
import sys

import pytest
from pydantic import create_model

from relaytrain.blueprint import BlueprintError, loads
from relaytrain.blueprint.schema import SHARDS_FIELDS, Functions, FunctionsDeployment, Training, settings_fields
from relaytrain.worker import functions_payload, spec_flags, spec_payload
from relaytrain_runtime.shards.config import ShardsConfig
from relaytrain_runtime.spec import MAX_SEED, RunSpec, SpecError

SHARDS_BP = "name: shards-run\ncloud: gcp\ntopology: function-shards\n"


def test_training_is_the_run_spec_field_for_field():
    spec_fields = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   for f in dataclasses.fields(RunSpec)}
    assert {name: f.default for name, f in Training.model_fields.items()} == spec_fields
    assert Training().run_spec() == RunSpec()


def test_functions_is_the_shards_config_plus_deployment_fields_declared_once():
    deployment = set(FunctionsDeployment.model_fields)
    assert deployment == {"memory_gib", "vcpu", "timeout_s", "max_instances"}
    assert SHARDS_FIELDS == {f.name for f in dataclasses.fields(ShardsConfig)}
    assert set(Functions.model_fields) == deployment | SHARDS_FIELDS and not deployment & SHARDS_FIELDS
    assert Functions().shards_config() == ShardsConfig()


def test_a_field_appended_to_a_settings_dataclass_is_in_the_derived_schema_and_checked():
    """What a new RunSpec field gets without another edit: a schema field with its type and default,
    and the spec's check (here an appended rule) applied to blueprint values."""

    @dataclasses.dataclass(frozen=True)
    class Extended(RunSpec):
        new_knob: int = 0

        def problems(self):
            out = super().problems()
            if isinstance(self.new_knob, int) and self.new_knob < 0:
                out.append(("new_knob", f"must be >= 0, got {self.new_knob}"))
            return out

    model = create_model("ExtendedTraining", **settings_fields(Extended))
    assert model.model_fields["new_knob"].default == 0 and model.model_fields["new_knob"].annotation is int
    assert Extended.check({"new_knob": -1}) == [("new_knob", "must be >= 0, got -1")]
    assert Extended.check({"new_knob": True})[0][0] == "new_knob"  # type check from the annotation


@pytest.mark.parametrize(("field", "value", "text"), [
    ("warmup_steps", -5, "must be >= 0, got -5"),
    ("eval_batches", 0, "must be >= 1, got 0"),
    ("seed", -1, f"must be 0..{MAX_SEED}"),
    ("seed", 2**63, f"must be 0..{MAX_SEED}"),
    ("eps", 0.0, "must be > 0"),
    ("lr", math.inf, "expected a finite number"),
    ("lr", math.nan, "expected a finite number"),
    ("min_lr", -1e-5, "must be >= 0"),
    ("beta1", 1.0, "must be in [0, 1)"),
    ("beta2", -0.1, "must be in [0, 1)"),
    ("grad_clip", math.inf, "expected a finite number"),
    ("grad_clip", -1.0, "must be >= 0"),
    ("weight_decay", -0.1, "must be >= 0"),
    ("mlm_probability", 1.0, "must be in (0, 1)"),
    ("steps", True, "expected an integer, got True (bool)"),
    ("steps", "5", "expected an integer, got '5' (str)"),
    ("preset", ["tiny-gpt"], "expected a string"),
    ("nope", 1, "unknown field"),
])
def test_run_spec_check_names_the_field(field, value, text):
    problems = RunSpec.check({field: value})
    assert [name for name, _ in problems] == [field]
    assert text in problems[0][1]
    with pytest.raises(SpecError) as err:
        RunSpec.from_dict({field: value})
    assert err.value.problems == problems and str(err.value).startswith(f"invalid run spec: {field}: ")


def test_run_spec_check_reports_every_bad_field_at_once():
    problems = RunSpec.check({"warmup_steps": -1, "eval_batches": 0, "eps": -1.0, "steps": "x"})
    assert [name for name, _ in problems] == ["steps", "warmup_steps", "eps", "eval_batches"]


def test_shards_config_refuses_unknown_and_bad_fields():
    [(field, message)] = ShardsConfig.check({"memory_gib": 16})  # a deployment field is not the run's
    assert field == "memory_gib" and message.startswith("unknown field")
    assert ShardsConfig.check({"outer_lr": math.nan})[0][0] == "outer_lr"
    assert ShardsConfig.check({"shards": True}) == [("shards", "expected an integer, got True (bool)")]
    assert ShardsConfig.check({"inner_state": "forget"}) == [
        ("inner_state", "must be keep or reset, got 'forget'")]


def test_every_shards_field_is_settable_from_a_blueprint_and_reaches_the_event():
    bp = loads(SHARDS_BP + "functions: {sync: diloco, inner_state: reset, local_steps: 4}\n")
    payload = functions_payload(bp)
    assert payload == ShardsConfig(sync="diloco", inner_state="reset", local_steps=4).to_dict()
    assert set(payload) == SHARDS_FIELDS  # no deployment field rides along
    assert ShardsConfig.from_dict(payload).inner_state == "reset"


def test_every_spec_field_is_settable_from_a_blueprint_with_its_line():
    with pytest.raises(BlueprintError) as err:
        loads("name: bad-run\ncloud: aws\ntopology: lambda-steps\ntraining:\n  steps: 4\n  warmup_steps: -5\n",
              "bp.yaml")
    assert err.value.problems == ["bp.yaml:6: training.warmup_steps: must be >= 0, got -5"]
    bp = loads("name: ok-run\ncloud: aws\ntopology: lambda-steps\ntraining: {warmup_steps: 5, eval_batches: 2}\n")
    assert spec_payload(bp) == RunSpec(warmup_steps=5, eval_batches=2).to_dict()


def test_spec_flags_round_trip_through_the_runtime_cli():
    import argparse

    from relaytrain_runtime.verbs._common import add_spec_arguments, spec_from_args

    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    spec = RunSpec(steps=7, warmup_steps=2, lr=1e-3, schedule="linear")
    assert spec_from_args(parser.parse_args(spec_flags(spec))) == spec


def test_runtime_init_refuses_a_bad_value_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "relaytrain_runtime", "init", "--store", store.as_uri(),
                           "--preset", "tiny-gpt", "--steps", "2", "--warmup-steps", "-5"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "warmup_steps: must be >= 0, got -5" in proc.stderr and "Traceback" not in proc.stderr
    assert not store.exists() or not any(store.rglob("*"))


def test_spec_json_from_an_event_is_checked_the_same_way():
    assert RunSpec.check(json.loads('{"eval_batches": 0, "spec_version": 1}')) == [
        ("eval_batches", "must be >= 1, got 0")]
