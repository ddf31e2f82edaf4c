"""Instruction data: prompt/response and messages records, the default template and a tokenizer's own chat template,
labels -100 outside responses, and masked tokens contributing nothing to the gradient."""

import json

import numpy as np
import pytest
import torch

from relaytrain_runtime.cli import main
from relaytrain_runtime.data import batch, open_dataset, read_manifest
from relaytrain_runtime.data.tokens import load_stored
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store

PAIRS = [(f"What is {i} plus {i + 3}?", f"{i} plus {i + 3} is {2 * i + 3}.") for i in range(400)]
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant: {% endif %}")


def spec_for(url):
    return RunSpec(preset="tiny-gpt", steps=4, batch_size=4, seq_len=64, seed=1, dataset=url)


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    rows = [{"prompt": p, "response": r} if i % 2 else
            {"messages": [{"role": "system", "content": "Add."}, {"role": "user", "content": p},
                          {"role": "assistant", "content": r}]} for i, (p, r) in enumerate(PAIRS)]
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "prepare", str(root / "chat.jsonl"), "--store", str(root / "ds"), "--vocab-size", "400"]) == 0
    return open_store(str(root / "ds"))


def responses_only(store, labels: torch.Tensor) -> str:
    tok = load_stored(store).tokenizer
    return tok.decode([t for t in labels.flatten().tolist() if t != -100], skip_special_tokens=False)


def test_labels_are_the_response_tokens_only(chat, tmp_path):
    ds = open_dataset(chat, spec_for(chat.url), str(tmp_path / "c"))
    assert read_manifest(chat)["corpus"]["instruction"] is True
    b = batch(spec_for(chat.url), 0, 0, 1, ds)
    ignored = b["labels"] == -100
    assert 0.2 < ignored.float().mean().item() < 0.9
    assert torch.equal(b["labels"][~ignored], b["input_ids"][~ignored])
    text = responses_only(chat, b["labels"])
    assert " plus " in text and "What" not in text and "<|user|>" not in text and "Add." not in text


def test_masked_tokens_contribute_nothing_to_the_gradient(chat, tmp_path):
    from relaytrain_runtime.model import build_model

    spec = spec_for(chat.url)
    b = batch(spec, 0, 0, 1, open_dataset(chat, spec, str(tmp_path / "c")))
    ids, labels = b["input_ids"], b["labels"]
    model = build_model(spec.model, seed=0)

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    masked = grads(model(ids, labels)[1])
    # the same loss written out: per-token losses of the response positions only, averaged over them
    logits = model(ids)[0][:, :-1]
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                                                  reduction="none")
    keep = (labels[:, 1:] != -100).reshape(-1).float()
    assert torch.allclose(masked, grads((per_token * keep).sum() / keep.sum()), atol=1e-6)
    # any targets at the masked positions give the same gradient; training on every token would not
    scrambled = torch.where(labels == -100, torch.randint_like(labels, 3, 400), labels)
    scrambled = torch.where(labels == -100, torch.full_like(labels, -100), scrambled)
    assert torch.equal(grads(model(ids, scrambled)[1]), masked)
    assert not torch.allclose(grads(model(ids, ids)[1]), masked, atol=1e-4)


def test_a_tokenizers_chat_template_renders_and_masks(chat, tmp_path):
    from transformers import PreTrainedTokenizerFast

    tok = load_stored(chat).tokenizer
    tok.add_special_tokens(["<s>", "</s>"])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", bos_token="<s>")
    hf.chat_template = TEMPLATE
    hf.save_pretrained(tmp_path / "model")
    src = tmp_path / "one.jsonl"
    src.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS[:200]))
    assert main(["data", "prepare", str(src), "--store", str(tmp_path / "ds"), "--tokenizer",
                 str(tmp_path / "model")]) == 0
    store = open_store(str(tmp_path / "ds"))
    manifest = read_manifest(store)
    assert manifest["special_tokens"]["<|endoftext|>"] == tok.token_to_id("</s>")  # the tokenizer's eos_token
    ds = open_dataset(store, spec_for(store.url), str(tmp_path / "c"))
    tokens, mask = ds.splits["train"].read(0, ds.tokens("train"))
    text = load_stored(store).tokenizer.decode(tokens.tolist(), skip_special_tokens=False)
    assert text.startswith("<s>user: What is 0 plus 3?</s>")  # the template, not the default
    answer = load_stored(store).tokenizer.decode(tokens[mask].tolist(), skip_special_tokens=False)
    assert answer.startswith("0 plus 3 is 3.</s>") and "user:" not in answer
    assert np.count_nonzero(mask) < len(mask) / 2
