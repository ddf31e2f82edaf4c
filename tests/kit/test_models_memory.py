"""Memory fit, checkpoint size and FLOPs per fine-tuning mode (full, LoRA, bf16 base), pure Python."""

from relaytrain.blueprint.memory import GIB, checkpoint_bytes, trainable_params, training_memory
from relaytrain.plan import flops_per_token
from relaytrain_runtime.presets import get_preset
from relaytrain_runtime.spec import RunSpec

LAMBDA_BYTES = 10240 * 1024**2


def _spec(**kw):
    return RunSpec(preset="tinyllama-1.1b", seq_len=256, batch_size=8, micro_batch_size=1, **kw)


def test_full_finetune_of_the_1b_shape_does_not_fit_a_lambda_and_lora_does():
    model = get_preset("tinyllama-1.1b")
    full = training_memory(model, 1, 256, spec=_spec())
    lora = training_memory(model, 1, 256, spec=_spec(finetune="lora"))
    bf16 = training_memory(model, 1, 256, spec=_spec(finetune="lora", base_dtype="bfloat16"))
    assert not full.fits(LAMBDA_BYTES) and lora.fits(LAMBDA_BYTES)
    assert full.total / GIB > 16 and full.frozen == 0 and full.weights == 4 * model.param_count()
    assert lora.frozen == 4 * model.param_count() and bf16.frozen == 2 * model.param_count()
    assert lora.optimizer == 8 * trainable_params(model, _spec(finetune="lora")) < full.optimizer / 100
    assert "frozen weights 4.1 + trainable weights 0.0" in lora.describe()
    assert full.describe().startswith(f"{full.total / GIB:.1f} GiB (weights 4.1 + gradients 4.1 + optimizer 8.2")


def test_lora_checkpoint_holds_only_the_adapters():
    model = get_preset("smollm-135m")
    lora = _spec(finetune="lora", lora_rank=16)
    # q, k, v, o of 30 layers: rank x (in + out)
    assert trainable_params(model, lora) == 30 * 16 * ((576 + 576) * 2 + (576 + 192) * 2)
    assert checkpoint_bytes(model, lora) == 12 * trainable_params(model, lora)
    # rank 16: 73x smaller
    assert checkpoint_bytes(model) == 12 * model.param_count() > 50 * checkpoint_bytes(model, lora)
    assert trainable_params(model, _spec(finetune="lora", lora_targets="q_proj")) == 30 * 8 * (576 + 576)


def test_lora_flops_skip_the_base_weight_gradients():
    model = get_preset("smollm-135m")
    full, lora = flops_per_token(model, 512, _spec()), flops_per_token(model, 512, _spec(finetune="lora"))
    attention = 12 * 30 * 576 * 512
    assert full == 6 * model.param_count() + attention  # rotary positions: no learned position table
    assert lora == 4 * model.param_count() + 6 * trainable_params(model, _spec(finetune="lora")) + attention
    assert flops_per_token(model, 512) == full
