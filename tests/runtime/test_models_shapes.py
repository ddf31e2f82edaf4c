"""Custom shapes: a preset plus overrides or a full config, validated with the field named; the preset table
is pure Python (the kit imports it without torch); pretrained configs map onto the families."""

import subprocess
import sys

import pytest

from relaytrain_runtime import RelayError
from relaytrain_runtime.presets import from_hf_config, get_preset, hf_config
from relaytrain_runtime.spec import RunSpec


def test_overrides_and_full_configs_resolve():
    spec = RunSpec(preset="tiny-llama", model_shape={"n_layers": 2, "n_kv_heads": 4})
    assert spec.model.n_layers == 2 and spec.model.kv_heads == 4 and spec.model.d_model == 128
    full = dict(family="llama", vocab_size=512, n_positions=64, d_model=64, n_layers=2, n_heads=4, d_ff=128)
    spec = RunSpec(preset="", model_shape=full, seq_len=64)
    assert spec.model.family == "llama" and spec.sequence_length == 64
    assert RunSpec.from_json(spec.to_json()).digest() == spec.digest()


@pytest.mark.parametrize("config,needle", [
    ({"n_heads": 3}, "model_shape.n_heads: must divide d_model 128, got 3"),
    ({"n_kv_heads": 3}, "model_shape.n_kv_heads: must divide n_heads 4 (0 = n_heads), got 3"),
    ({"n_positions": 16}, "seq_len: must be 1..16"),
    ({"d_modle": 64}, "model_shape.d_modle: unknown field"),
    ({"family": "mamba", "vocab_size": 1, "n_positions": 1, "d_model": 1, "n_layers": 1, "n_heads": 1, "d_ff": 1},
     "model_shape.family: unknown 'mamba'"),
    ({"family": "llama", "d_model": 64}, "model_shape.vocab_size: required in a full config"),
])
def test_bad_shapes_name_the_field(config, needle):
    with pytest.raises(RelayError, match="invalid run spec") as exc:
        RunSpec(preset="tiny-llama", seq_len=32, model_shape=config)
    assert needle in str(exc.value)


@pytest.mark.parametrize("name", ["tiny-gpt", "tiny-bert", "tiny-llama", "qwen2.5-0.5b", "tinyllama-1.1b"])
def test_hf_config_round_trips(name):
    cfg = get_preset(name)
    assert from_hf_config(hf_config(cfg)) == cfg


def test_preset_table_and_spec_import_without_torch():
    code = ("import sys, relaytrain_runtime.presets, relaytrain_runtime.spec; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
