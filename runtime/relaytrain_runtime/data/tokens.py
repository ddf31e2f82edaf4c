"""Tokenizers a dataset can use, their special tokens, and the rendering of chat records to (ids, loss mask).

Four kinds (the `--tokenizer` of `relaytrain data prepare`):
- `bpe` (default): a byte-level BPE trained on a sample of the train documents;
- `pretrained`: the tokenizer of the pretrained model the run starts from (`load_model`: its directory
  or URL, `--init-from`; `load_base`: the copy of it in the run's store, base/<sha256>/);
- a `tokenizer.json` file (path or store URL) of the `tokenizers` library;
- a pretrained model's directory (its tokenizer.json / tokenizer_config.json / chat template), loaded
  with transformers' AutoTokenizer when a chat template must be rendered.

Every tokenizer needs an end-of-text token: the `eos_token` of its tokenizer_config.json, else
`<|endoftext|>`. Chat records render with the tokenizer's chat template when it has one,
else with the default template (docs/DATA.md):

    <|user|>\\n{content}\\n<|assistant|>\\n{content}<|endoftext|>...

Loss falls on the assistant contents (and the end-of-text after each), nothing else.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from relaytrain_runtime.contract.keys import TOKENIZER_DIR_PREFIX, TOKENIZER_KEY
from relaytrain_runtime.data.build import EOS, MASK, PAD, DataError
from relaytrain_runtime.store import NotFound, Store, open_store

CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json")


@dataclass
class Tok:
    tokenizer: object  # tokenizers.Tokenizer
    config: dict  # tokenizer_config.json of a pretrained tokenizer ({} otherwise)
    files: dict[str, bytes]  # a pretrained tokenizer's own files, copied into the dataset
    where: str
    _hf: object = field(default=None, repr=False)  # the transformers tokenizer, built once for the chat template

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _id(self, token) -> int | None:
        if isinstance(token, dict):  # tokenizer_config.json may spell a token as an AddedToken dict
            token = token.get("content")
        return self.tokenizer.token_to_id(token) if isinstance(token, str) else None

    @property
    def eos_id(self) -> int:
        eos = self._id(self.config.get("eos_token"))  # a pretrained tokenizer's own end-of-text first
        eos = eos if eos is not None else self._id(EOS)
        if eos is None:
            raise DataError(f"tokenizer {self.where} has no end-of-text token: neither {EOS} nor an eos_token in its "
                            "tokenizer_config.json; add one as a special token or use --tokenizer bpe")
        return eos

    def special_tokens(self) -> dict[str, int | None]:
        """Ids of the roles the runtime uses, keyed by the runtime's names (None where the tokenizer lacks one)."""
        pad = self._id(PAD)
        mask = self._id(MASK)
        return {EOS: self.eos_id, PAD: pad if pad is not None else self._id(self.config.get("pad_token")),
                MASK: mask if mask is not None else self._id(self.config.get("mask_token"))}

    @property
    def has_chat_template(self) -> bool:
        return bool(self.config.get("chat_template")) or "chat_template.jinja" in self.files \
            or "chat_template.json" in self.files


def dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def _tokenizer_from_str(text: str, where: str):
    try:
        return _parsed(text)
    except Exception as exc:  # tokenizers raises plain Exceptions for bad JSON
        raise DataError(f"{where} is not a tokenizers tokenizer.json ({str(exc).splitlines()[0][:160]})") from None


@functools.lru_cache(maxsize=4)
def _parsed(text: str):
    """A tokenizer.json parsed once per process: the shard phase loads the dataset's for every object, and parsing
    a BPE's JSON costs more than encoding a small document. Encoding never changes a Tokenizer, so one is shared."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def load_given(spec: str) -> Tok:
    """The tokenizer named by `spec`: a tokenizer.json file (path or URL) or a pretrained model directory (a
    local path or file:// URL)."""
    path = Path(urlparse(spec).path if spec.startswith("file://") else spec)
    if path.is_dir():
        return _load_dir(path)
    if "://" in spec:
        head, _, name = spec.rstrip("/").rpartition("/")
        store = open_store(head)
        try:
            text = store.read(name).decode()
        except NotFound:
            raise DataError(f"tokenizer {spec} does not exist (expected a tokenizer.json URL)") from None
        return Tok(_tokenizer_from_str(text, spec), {}, {}, spec)
    if not path.is_file():
        raise DataError(f"tokenizer {spec} does not exist (expected 'bpe', a tokenizer.json or a model directory)")
    return Tok(_tokenizer_from_str(path.read_text(), spec), {}, {}, spec)


def _from_files(files: dict[str, bytes], where: str) -> Tok:
    """A pretrained model's tokenizer from its files (tokenizer.json and those of CONFIG_FILES it has)."""
    if "tokenizer.json" not in files:
        raise DataError(f"{where} has no tokenizer.json (a fast tokenizer saved with save_pretrained), so "
                        "--tokenizer pretrained has nothing to use; use --tokenizer bpe or a tokenizer.json")
    own = {name: raw for name, raw in files.items() if name in CONFIG_FILES}
    return Tok(_tokenizer_from_str(files["tokenizer.json"].decode(), f"{where}/tokenizer.json"),
               _config(own, where), own, where)


def load_model(url: str) -> Tok:
    """The tokenizer of the pretrained model at `url` (a directory: local path, file://, s3:// or gs://)."""
    store = open_store(url)
    return _from_files({name: store.read(name) for name in ("tokenizer.json", *CONFIG_FILES) if store.exists(name)},
                       store.url)


def load_base(run_store: Store) -> Tok:
    """The tokenizer of the pretrained base a run starts from, read from the run's store (its spec names the
    base by digest; every file is verified against the base's manifest)."""
    from relaytrain_runtime.contract.keys import SPEC_KEY, base_key
    from relaytrain_runtime.pretrained import base_files
    from relaytrain_runtime.spec import RunSpec

    try:
        spec = RunSpec.from_json(run_store.read(SPEC_KEY))
    except NotFound:
        raise DataError(f"{run_store.url} holds no run ({SPEC_KEY}), so it has no pretrained tokenizer; "
                        "initialise the run first (`relaytrain init --init-from DIR`)") from None
    if not spec.init_sha256:
        raise DataError(f"the run at {run_store.url} starts from no pretrained model (its spec has no init_from), "
                        "so --tokenizer pretrained has no tokenizer; use bpe or a tokenizer.json")
    where = f"{run_store.url}/{base_key(spec.init_sha256, '')}".rstrip("/")
    return _from_files(base_files(run_store, spec.init_sha256, only=("tokenizer.json", *CONFIG_FILES)), where)


def _load_dir(path: Path) -> Tok:
    files = {name: (path / name).read_bytes() for name in ("tokenizer.json", *CONFIG_FILES) if (path / name).is_file()}
    if "tokenizer.json" in files:
        return _from_files(files, str(path))
    # vocab.json/merges.txt or sentencepiece: transformers converts it to a fast tokenizer
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: no tokenizer transformers can load ({str(exc).splitlines()[0][:160]})") from None
    if not getattr(hf, "is_fast", False):
        raise DataError(f"{path}: its tokenizer has no fast (tokenizers) form; save it with a tokenizer.json")
    return Tok(hf.backend_tokenizer, _config(files, str(path)), files, str(path))


def _config(files: dict[str, bytes], where: str) -> dict:
    try:
        return json.loads(files.get("tokenizer_config.json", b"{}"))
    except ValueError:
        raise DataError(f"{where}/tokenizer_config.json is not JSON") from None


def save(store: Store, tok: Tok) -> None:
    """Write the tokenizer into the dataset: its own files first, tokenizer.json (what workers load) last."""
    for name, raw in tok.files.items():
        store.write(TOKENIZER_DIR_PREFIX + name, raw)
    store.write(TOKENIZER_KEY, tok.tokenizer.to_str().encode())


def load_stored(store: Store) -> Tok:
    """The tokenizer a dataset store holds (written by the plan phase)."""
    try:
        text = store.read(TOKENIZER_KEY).decode()
    except NotFound:
        raise DataError(f"{store.url}/{TOKENIZER_KEY} does not exist; run the 'plan' phase first") from None
    files = {k[len(TOKENIZER_DIR_PREFIX):]: store.read(k) for k in store.list(TOKENIZER_DIR_PREFIX)}
    return Tok(_tokenizer_from_str(text, f"{store.url}/{TOKENIZER_KEY}"), _config(files, store.url), files, store.url)


# ------------------------------------------------------------------------------------------- chat


def check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{i}] must be an object with string 'role' and 'content'")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no 'assistant' message, so nothing to train on")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _default_segments(messages: list[dict], eos: str) -> list[tuple[str, bool]]:
    out = []
    for m in messages:
        out.append((f"<|{m['role']}|>\n", False))
        out.append((m["content"] + eos, True) if m["role"] == "assistant" else (m["content"] + "\n", False))
    return out


def _hf_tokenizer(tok: Tok):
    """A transformers tokenizer built from the tokenizer's files (for the chat template), once per Tok."""
    if tok._hf is None:
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            for name, raw in {**tok.files, "tokenizer.json": tok.tokenizer.to_str().encode()}.items():
                Path(tmp, name).write_bytes(raw)
            tok._hf = AutoTokenizer.from_pretrained(tmp)
    return tok._hf


def _template_segments(tok: Tok, messages: list[dict], where: str) -> list[tuple[str, bool]]:
    hf = _hf_tokenizer(tok)

    def render(msgs, prompt):
        return hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt)

    out, done = [], ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt, full = render(messages[:i], True) if i else "", render(messages[:i + 1], False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise DataError(f"{where}: the tokenizer's chat template does not render turns as prefixes of the "
                            "conversation, so response tokens cannot be located")
        out += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    rest = render(messages, False)
    out.append((rest[len(done):], False))
    return out


def render_chat(tok: Tok, messages: list[dict], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of one conversation (ending in end-of-text) and its loss mask (1 on response tokens)."""
    segments = (_template_segments(tok, messages, where) if tok.has_chat_template
                else _default_segments(messages, tok.tokenizer.id_to_token(tok.eos_id)))
    ids: list[int] = []
    mask: list[int] = []
    for text, train in segments:
        if text:
            seg = tok.tokenizer.encode(text, add_special_tokens=False).ids
            ids += seg
            mask += [int(train)] * len(seg)
    if not ids or ids[-1] != tok.eos_id:
        ids.append(tok.eos_id)
        mask.append(0)
    return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.uint8)


def encode_texts(tok: Tok, texts: list[str]) -> list[np.ndarray]:
    """Each document's ids followed by end-of-text (the `tokenizers` batch encoder)."""
    eos = tok.eos_id
    encoded = tok.tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.asarray(enc.ids + [eos], dtype=np.int64) for enc in encoded]

