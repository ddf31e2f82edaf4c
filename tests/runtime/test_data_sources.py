"""Sources: text folders, JSONL(.zst), Parquet and saved Hugging Face datasets give the same token stream; a given
tokenizer; a single-file corpus trains; bad input is one clear line, exit 2, and leaves the store as it was."""

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from relaytrain_runtime.cli import main
from relaytrain_runtime.data import MANIFEST_KEY, open_dataset, read_manifest
from relaytrain_runtime.data.reader import check_fits
from relaytrain_runtime.spec import RunSpec
from relaytrain_runtime.store import open_store

DOCS = [p.read_text() for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
        if 2000 < p.stat().st_size < 12000][:30]


def prepare(source, store, *extra):
    return main(["data", "prepare", str(source), "--store", str(store), "--vocab-size", "600", *extra])


def stream(store_dir, cache) -> np.ndarray:
    """train + val tokens in stream order (val_fraction 0 holds out the tail, so this is the whole corpus)."""
    store = open_store(str(store_dir))
    ds = open_dataset(store, RunSpec(preset="tiny-gpt", seq_len=32, dataset=store.url), str(cache))
    return np.concatenate([ds.splits[s].read(0, ds.tokens(s))[0] for s in ("train", "val")])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The same documents as a text folder, JSONL, JSONL.zst, Parquet (column 'body') and a saved HF dataset."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    root = tmp_path_factory.mktemp("corpus")
    (root / "text").mkdir()
    for i, doc in enumerate(DOCS):
        (root / "text" / f"doc-{i:03d}.txt").write_text(doc)
    lines = "".join(json.dumps({"text": d, "n": i}) + "\n" for i, d in enumerate(DOCS)).encode()
    (root / "jsonl").mkdir()
    (root / "jsonl" / "a.jsonl").write_bytes(lines)
    (root / "zst").mkdir()
    (root / "zst" / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    (root / "parquet").mkdir()
    pq.write_table(pa.table({"n": list(range(len(DOCS))), "body": DOCS}), root / "parquet" / "a.parquet")
    datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(root / "hf"))
    return root


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert prepare(corpus / "text", out / "ds", "--val-fraction", "0") == 0
    return out / "ds"


@pytest.mark.parametrize("source, extra", [("jsonl", []), ("zst", []), ("parquet", ["--field", "body"]),
                                           ("hf", ["--format", "hf"])])
def test_every_format_gives_the_text_folders_tokens(corpus, reference, tmp_path, source, extra):
    tokenizer = str(reference / "data/tokenizer.json")
    assert prepare(corpus / source, tmp_path / "ds", "--val-fraction", "0", "--tokenizer", tokenizer, *extra) == 0
    assert np.array_equal(stream(tmp_path / "ds", tmp_path / "c"), stream(reference, tmp_path / "c"))
    manifest = read_manifest(open_store(str(tmp_path / "ds")))
    assert manifest["corpus"]["documents"]["train"] == len(DOCS) and manifest["corpus"]["val"] == "tail"


def test_val_fraction_holds_out_documents_and_inspect_reports_them(corpus, tmp_path, capsys):
    assert prepare(corpus / "jsonl", tmp_path / "ds", "--val-fraction", "0.3") == 0
    docs = read_manifest(open_store(str(tmp_path / "ds")))["corpus"]["documents"]
    assert docs["train"] + docs["val"] == len(DOCS) and 3 <= docs["val"] <= 16
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path / "ds"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["val"]["documents"] == docs["val"] and info["splits"]["train"]["shards"] == 1
    assert info["splits"]["train"]["bytes"] == 2 * info["splits"]["train"]["tokens"]
    assert info["sample"] and info["sample"] in DOCS[0] + DOCS[1]  # decoded from the first train tokens


def test_a_single_file_corpus_trains(tmp_path):
    from relaytrain_runtime.leg import run_leg

    (tmp_path / "book.txt").write_text(DOCS[0] * 3)
    assert prepare(f"file://{tmp_path}/book.txt", tmp_path / "ds") == 0
    run = f"file://{tmp_path}/run"
    status = run_leg(run, spec={"preset": "tiny-gpt", "steps": 2, "batch_size": 2, "seq_len": 64, "eval_batches": 1,
                                "dataset": f"file://{tmp_path}/ds"}, cache_dir=str(tmp_path / "cache"))
    assert status["done"] and status["step"] == 2 and status["val_loss"] > 0


def test_a_pretrained_tokenizer_directory_is_used_and_checked(reference, tmp_path, corpus):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(reference / "data/tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(tmp_path / "model")
    assert prepare(corpus / "jsonl", tmp_path / "ds", "--tokenizer", str(tmp_path / "model")) == 0
    manifest = read_manifest(open_store(str(tmp_path / "ds")))
    # the manifest names where the tokenizer came from, as the command line made it: an absolute file:// URL
    assert manifest["vocab_size"] == tok.get_vocab_size()
    assert manifest["corpus"]["tokenizer"] == (tmp_path / "model").as_uri()
    with pytest.raises(Exception, match="vocabulary of 9000 tokens, more than tiny-gpt's 4096"):
        check_fits({**manifest, "vocab_size": 9000}, RunSpec(preset="tiny-gpt"), "ds")
    with pytest.raises(Exception, match="no <mask> token, which tiny-bert"):
        check_fits({**manifest, "special_tokens": {"<|endoftext|>": 0, "<mask>": None}}, RunSpec(preset="tiny-bert"),
                   "ds")


def _bad_inputs(root: Path) -> list[tuple[list[str], str]]:
    """(prepare arguments, the message its one error line must hold)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, models

    (root / "latin1").mkdir()
    (root / "latin1" / "a.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "j").mkdir()
    (root / "j" / "a.jsonl").write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": broken\n')
    (root / "nofield").mkdir()
    (root / "nofield" / "a.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    (root / "empty").mkdir()
    (root / "empty" / "a.txt").write_text("")
    (root / "pq").mkdir()
    pq.write_table(pa.table({"text": [1, 2, 3]}), root / "pq" / "a.parquet")
    (root / "null").mkdir()
    pq.write_table(pa.table({"text": ["a", None, "c"]}), root / "null" / "a.parquet")
    Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")).save(str(root / "noeos.json"))
    return [
        ([str(root / "latin1")], "latin1/a.txt: not UTF-8 text (byte 3 is 0xe9)"),
        ([str(root / "j")], "j/a.jsonl line 3: not a JSON record"),
        ([str(root / "nofield"), "--field", "text"], "nofield/a.jsonl line 2: no field 'text' (fields: body)"),
        ([str(root / "empty")], "the corpus is empty"),
        ([str(root / "pq")], "pq/a.parquet: column 'text' is int64, expected a string column"),
        ([str(root / "null")], "null/a.parquet row 1: field 'text' is NoneType, expected a string"),
        ([str(root / "j"), "--tokenizer", str(root / "noeos.json")], "has no end-of-text token"),
        ([str(root / "nothing")], "no source objects under"),
    ]


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    for args, message in _bad_inputs(tmp_path):
        out = tmp_path / "out"
        capsys.readouterr()
        assert main(["data", "prepare", *args, "--store", str(out), "--vocab-size", "300"]) == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("tokenizing ")]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, (args, err)
        assert not open_store(str(out)).list(), (args, open_store(str(out)).list())  # the store is as it was


def test_prepare_refuses_a_store_that_already_holds_a_dataset(reference, corpus, capsys):
    assert open_store(str(reference)).exists(MANIFEST_KEY)
    assert prepare(corpus / "text", reference) == 2
    assert "already holds a dataset" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["text", "jsonl"])
def test_grouped_objects_give_the_bytes_of_one_shard_per_object(corpus, tmp_path, monkeypatch, source):
    """`data prepare` encodes many objects' documents together (here in batches of 3, so objects straddle
    batches); the store holds the same bytes as the fan-out's one `shard` per object, and the tokens are
    those of the tokenizer encoding each document alone."""
    from tokenizers import Tokenizer

    from relaytrain_runtime import preprocess

    monkeypatch.setattr(preprocess, "ENCODE_BATCH", 3)
    assert prepare(corpus / source, tmp_path / "grouped", "--val-fraction", "0.2") == 0
    grouped = open_store(str(tmp_path / "grouped"))
    tok_json = grouped.read("data/tokenizer.json")
    (tmp_path / "tok.json").write_bytes(tok_json)
    planned = preprocess.plan(str(tmp_path / "single"), str(corpus / source), 600, tokenizer=str(tmp_path / "tok.json"),
                              val_fraction=0.2)
    for item in planned["items"]:
        preprocess.shard(item["store"], item["source"], item["key"])
    preprocess.manifest(str(tmp_path / "single"))
    single = open_store(str(tmp_path / "single"))
    parts = [k for k in grouped.list("data/") if not k.startswith("data/prepare")]  # settings name the tokenizer
    assert parts == [k for k in single.list("data/") if not k.startswith("data/prepare")] and len(parts) > 3
    assert all(grouped.read(k) == single.read(k) for k in parts if k != "data/manifest.json")
    ours, theirs = read_manifest(grouped), read_manifest(single)
    assert ours["splits"] == theirs["splits"] and ours["corpus"]["documents"] == theirs["corpus"]["documents"]
    tok = Tokenizer.from_str(tok_json.decode())
    eos = tok.token_to_id("<|endoftext|>")
    expected = {split: [] for split in ("train", "val")}
    for i, doc in enumerate(DOCS):
        key = f"doc-{i:03d}.txt" if source == "text" else "a.jsonl"
        index = 0 if source == "text" else i
        expected["val" if preprocess.is_val(key, index, 0.2) else "train"] += tok.encode(doc).ids + [eos]
    for split, shards in ours["splits"].items():
        got = np.concatenate([np.frombuffer(grouped.read(s["name"]), dtype=ours["dtype"]) for s in shards])
        assert got.tolist() == expected[split], split


@pytest.mark.parametrize("source,store", [("one.jsonl", "ds"), ("./one.jsonl", "./ds"), ("../here/one.jsonl", "ds")])
def test_relative_paths_on_the_command_line_name_local_files(tmp_path, monkeypatch, source, store):
    """A relative path, `./`-prefixed or not, is the local file or folder it names (made an absolute file:// URL at
    the command line); only URLs in events are held to the no-'.'-segments rule."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "one.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS[:6]))
    monkeypatch.chdir(here)
    assert prepare(source, store) == 0
    manifest = read_manifest(open_store(str(here / "ds")))
    assert manifest["corpus"]["source"] == (here / "one.jsonl").parent.as_uri()
    assert main(["data", "inspect", "./ds", "--json"]) == 0
