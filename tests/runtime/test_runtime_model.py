"""Models: transformers classes at canonical sizes, canonical parameter names, causal masking, the MLM head."""

import pytest
import torch

from relaytrain_runtime.model import build_model, model_tensors
from relaytrain_runtime.presets import PRESETS, get_preset

# Known sizes of the canonical models (Hugging Face GPT2LMHeadModel / BertForMaskedLM, no pooler;
# SmolLM-135M, Qwen2.5-0.5B and TinyLlama-1.1B as published).
KNOWN = {"gpt2-small": 124_439_808, "bert-base": 109_514_298, "bert-large": 335_174_458,
         "tiny-gpt": 1_334_016, "tiny-bert": 1_355_136, "tiny-llama": 1_311_872,
         "smollm-135m": 134_515_008, "qwen2.5-0.5b": 494_032_768, "tinyllama-1.1b": 1_100_048_384}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_count_is_pinned(name):
    with torch.device("meta"):  # shapes only: no memory for bert-large
        model = build_model(get_preset(name))
    count = sum(p.numel() for p in model_tensors(model).values())
    assert count == KNOWN[name] == get_preset(name).param_count()


def test_gpt_names_match_gpt2_and_head_is_tied():
    model = build_model(get_preset("tiny-gpt"), seed=0)
    names = set(model_tensors(model))
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
            "transformer.h.3.mlp.c_proj.bias", "transformer.ln_f.weight"} <= names
    assert "lm_head.weight" not in names and model.hf.lm_head.weight is model.hf.transformer.wte.weight


def test_bert_names_match_bert_for_masked_lm():
    names = set(model_tensors(build_model(get_preset("tiny-bert"), seed=0)))
    assert {"bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
            "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.output.LayerNorm.bias",
            "bert.encoder.layer.3.output.dense.weight", "cls.predictions.transform.dense.weight",
            "cls.predictions.bias"} <= names
    assert not any("pooler" in n or "decoder" in n for n in names)


def test_gpt_is_causal_and_bert_is_not():
    ids = torch.randint(3, 4096, (2, 16), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 4096
    gpt = build_model(get_preset("tiny-gpt"), seed=0).eval()
    bert = build_model(get_preset("tiny-bert"), seed=0).eval()
    with torch.no_grad():
        a, b = gpt(ids)[0], gpt(changed)[0]
        assert torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10:], b[:, 10:])
        a, b = bert(ids)[0], bert(changed)[0]
        assert not torch.allclose(a[:, :10], b[:, :10])


def test_same_seed_same_weights_and_losses_are_finite():
    cfg = get_preset("tiny-gpt")
    a, b, c = build_model(cfg, seed=3), build_model(cfg, seed=3), build_model(cfg, seed=4)
    ta, tb, tc = model_tensors(a), model_tensors(b), model_tensors(c)
    assert all(torch.equal(ta[k], tb[k]) for k in ta) and not all(torch.equal(ta[k], tc[k]) for k in ta)
    ids = torch.randint(3, 4096, (2, 16))
    logits, loss = a(ids, ids)
    assert logits.shape == (2, 16, 4096) and torch.isfinite(loss)
    # an untrained model predicts close to uniform: loss near ln(V)
    assert abs(loss.item() - torch.log(torch.tensor(4096.0)).item()) < 0.5


@pytest.mark.parametrize("name,arch", [("tiny-gpt", "GPT2LMHeadModel"), ("tiny-bert", "BertForMaskedLM"),
                                       ("tiny-llama", "LlamaForCausalLM"), ("qwen2.5-0.5b", "Qwen2ForCausalLM")])
def test_presets_build_transformers_classes_with_sdpa(name, arch):
    with torch.device("meta"):
        model = build_model(get_preset(name))
    assert type(model.hf).__name__ == arch and model.hf.config._attn_implementation == "sdpa"


def test_llama_is_causal_with_grouped_query_attention():
    model = build_model(get_preset("tiny-llama"), seed=0).eval()
    assert model.hf.model.layers[0].self_attn.k_proj.out_features == 64  # 2 kv heads of 32
    ids = torch.randint(3, 4096, (2, 16), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 4096
    with torch.no_grad():
        a, b = model(ids)[0], model(changed)[0]
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.equal(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("name", ["tiny-gpt", "tiny-bert", "tiny-llama"])
def test_the_loss_is_named_for_the_task_and_is_transformers_own(name, capfd):
    """Each model names its loss function (GPT2LMHeadModel's class name matches none of transformers' and it
    printed a fallback notice at every leg): the causal loss is the shifted cross entropy, the masked one is not."""
    import torch.nn.functional as F

    from relaytrain_runtime.model import LOSS_TYPES

    cfg = get_preset(name)
    model = build_model(cfg, seed=0)
    assert model.hf.loss_type == LOSS_TYPES[cfg.task]
    ids = torch.randint(3, 4096, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, loss = model(ids, ids)
    shift = logits[:, :-1] if cfg.task == "causal" else logits
    target = ids[:, 1:] if cfg.task == "causal" else ids
    assert torch.allclose(loss, F.cross_entropy(shift.reshape(-1, shift.shape[-1]).float(), target.reshape(-1)))
    assert "loss_type" not in capfd.readouterr().err
