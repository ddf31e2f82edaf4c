"""Preparation throughput per source format against the `tokenizers` library's own batch encoding of the same text.

    python bench/bench_data_prepare.py [--mb 4] [--rounds 2]

The corpus: the first `--mb` MB of stdlib sources, one document per file, written as a text folder, JSONL,
JSONL.zst, Parquet and a saved Hugging Face dataset. "prepare": `relaytrain data prepare` end to end with a
given tokenizer.json (no BPE training: that is the same for every format), i.e. read, parse, encode, write
shards, manifest. "baseline": `Tokenizer.encode_batch` of the same list of strings, already in memory,
timed again before every prepare round (on a shared machine the load drifts; both are best of all their
rounds). Reports MB/s of each and prepare's speed as a fraction of the baseline's. One JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))

from relaytrain_runtime.data import stdlib_files, train_tokenizer  # noqa: E402
from relaytrain_runtime.verbs.data import add_arguments, prepare  # noqa: E402


def write_formats(root: Path, texts: list[str]) -> dict[str, list[str]]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    (root / "text").mkdir()
    for i, t in enumerate(texts):
        (root / "text" / f"{i:05d}.txt").write_text(t)
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    (root / "jsonl").mkdir()
    (root / "jsonl" / "a.jsonl").write_bytes(lines)
    (root / "zst").mkdir()
    (root / "zst" / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    (root / "parquet").mkdir()
    pq.write_table(pa.table({"text": texts}), root / "parquet" / "a.parquet")
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(root / "hf"))
    return {"text": [], "jsonl": [], "jsonl.zst": ["zst"], "parquet": [], "hf": []}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    texts = [t for _, t in stdlib_files(int(args.mb * 1e6))]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    tok = train_tokenizer(texts[:200], 4096)
    out = {"mb": round(mb, 2), "documents": len(texts), "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_formats(root, texts)
        (root / "tok.json").write_text(tok.to_str())
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        base, results = float("inf"), {}
        for fmt, folder in [("text", "text"), ("jsonl", "jsonl"), ("jsonl.zst", "zst"), ("parquet", "parquet"),
                            ("hf", "hf")]:
            best = float("inf")
            for r in range(args.rounds):
                base = min(base, _timed(lambda: tok.encode_batch(texts)))
                a = parser.parse_args(["prepare", str(root / folder), "--store", str(root / f"out-{fmt}-{r}"),
                                       "--tokenizer", str(root / "tok.json"), "--workers", "2"])
                best = min(best, _timed(lambda a=a: prepare(a)))
            results[fmt] = best
        out["baseline_mb_s"] = round(mb / base, 2)
        out["formats"] = {fmt: {"mb_s": round(mb / best, 2), "vs_baseline": round(base / best, 3)}
                          for fmt, best in results.items()}
    print(json.dumps(out))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
