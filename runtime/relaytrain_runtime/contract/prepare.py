"""How a dataset is prepared: the settings `data prepare`, the preprocess plan event and a blueprint's
`dataset:` share (names, accepted values, defaults, limits). Standard library only, so the kit checks a
blueprint against the same facts the runtime applies (relaytrain_runtime.preprocess).
"""

from __future__ import annotations

FORMATS = ("text", "jsonl", "parquet", "hf")
BPE, PRETRAINED = "bpe", "pretrained"  # train a byte-level BPE / the pretrained model's own tokenizer
DEFAULT_VOCAB_SIZE = 4096  # a trained BPE's vocabulary when nothing says otherwise
MIN_VOCAB_SIZE = 259  # the 256 byte symbols and the 3 special tokens
DEFAULT_VAL_FRACTION = 0.01  # share of documents held out for validation
DEFAULT_SAMPLE_BYTES = 20_000_000  # text a BPE is trained on


def val_fraction_problem(value: float) -> str | None:
    """None if `value` is a valid validation share, else what is accepted."""
    if 0.0 <= value < 1.0:
        return None
    return f"must be in [0, 1) (the share of documents held out for validation), got {value}"
