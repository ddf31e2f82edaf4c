"""Data: sources -> tokenizer -> token shards + manifest (build, preprocess) -> batches (reader).

    build    the stdlib corpus, the byte-level BPE, the manifest, finding a run's dataset
    sources  folders/prefixes of text, JSONL(.zst), Parquet, saved Hugging Face datasets -> documents
    tokens   tokenizers (trained BPE, tokenizer.json, a pretrained directory), chat rendering + loss masks
    reader   shards memory-mapped from a local cache, epoch order, batches, data position

docs/DATA.md describes the layout in a store and every rule. Building needs numpy and tokenizers
(pyarrow / datasets / transformers for those sources); batches need torch.
"""

from relaytrain_runtime.data.build import (
    DATA_PREFIX,
    EOS,
    EVAL_KEY,
    MANIFEST_KEY,
    MASK,
    MASK_KEY,
    PAD,
    SHARD_TOKENS,
    SPECIAL_TOKENS,
    STDLIB_CAP_BYTES,
    TOKENIZER_KEY,
    VAL_EVERY,
    DataError,
    build_stdlib_dataset,
    dataset_store,
    encode_split,
    ensure_dataset,
    read_manifest,
    split_files,
    stdlib_files,
    train_tokenizer,
    unigram_entropy,
    write_dataset,
    write_manifest,
    write_token_dataset,
)
from relaytrain_runtime.data.reader import (
    SAMPLING,
    Dataset,
    batch,
    default_cache_dir,
    epochs,
    eval_batch,
    open_dataset,
    permute,
    position,
)

__all__ = [
    "DATA_PREFIX", "EOS", "EVAL_KEY", "MANIFEST_KEY", "MASK", "MASK_KEY", "PAD", "SAMPLING", "SHARD_TOKENS",
    "SPECIAL_TOKENS", "STDLIB_CAP_BYTES", "TOKENIZER_KEY", "VAL_EVERY", "DataError", "Dataset", "batch",
    "build_stdlib_dataset", "dataset_store", "default_cache_dir", "encode_split", "ensure_dataset", "epochs",
    "eval_batch", "open_dataset", "permute", "position", "read_manifest", "split_files", "stdlib_files",
    "train_tokenizer", "unigram_entropy", "write_dataset", "write_manifest", "write_token_dataset",
]
