"""Tokenizers for the transformers trainer: `byte` (no training), `bpe` (trained on the
study's own corpora with the `tokenizers` library, cached), or a local pretrained directory.
Each becomes a `transformers` tokenizer for a kept model (`for_transformers`)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError

SPECIALS = ("<pad>", "<eos>", "<mask>", "<cls>")


@dataclass
class Tokenizer:
    """What the trainer needs of a tokenizer, whichever kind it is."""

    vocab_size: int
    pad_id: int
    eos_id: int
    mask_id: int
    cls_id: int
    encode_fn: Any
    kind: str
    #: the library tokenizer behind encode_fn: a `tokenizers.Tokenizer` (bpe) or a
    #: `transformers` tokenizer (pretrained); None for byte, which needs none
    backend: Any = None

    def encode(self, text: str) -> list[int]:
        return self.encode_fn(text)


def byte_tokenizer() -> Tokenizer:
    """UTF-8 bytes (0-255) and four special ids after them: nothing to train or download."""
    return Tokenizer(260, 256, 257, 258, 259, lambda t: list(t.encode("utf-8")), "byte")


def bpe_tokenizer(texts: list[str], vocab_size: int, cache_dir: str | None) -> Tokenizer:
    """Byte-level BPE trained on `texts`; cached by content so a study trains it once."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers import Tokenizer as HFTokenizer

    key = hashlib.sha256(f"{vocab_size}\0".encode() + "\0".join(texts).encode()).hexdigest()
    cache = Path(cache_dir or tempfile.gettempdir()) / f"bpe-{vocab_size}-{key[:16]}.json"
    if cache.exists():
        tok = HFTokenizer.from_file(str(cache))
    else:
        trainer = ByteLevelBPETokenizer()
        trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                                    special_tokens=list(SPECIALS), show_progress=False)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        trainer.save(str(tmp))
        os.replace(tmp, cache)  # trials training it at once: the last complete one wins
        tok = HFTokenizer.from_file(str(cache))
    ids = [tok.token_to_id(s) for s in SPECIALS]
    return Tokenizer(tok.get_vocab_size(), *ids,
                     encode_fn=lambda t: tok.encode(t).ids, kind="bpe", backend=tok)


def pretrained_tokenizer(path: str) -> Tokenizer:
    """A tokenizer saved with `save_pretrained` (or a hub name, given a network)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise AutostageError(f"model.tokenizer: cannot load a tokenizer from {path!r}: "
                             f"{type(e).__name__}: {e}") from None
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    mask = tok.mask_token_id if tok.mask_token_id is not None else pad
    cls = tok.cls_token_id if tok.cls_token_id is not None else eos
    if eos is None:
        raise AutostageError(f"model.tokenizer: {path!r} has no end-of-text token")
    return Tokenizer(len(tok), pad, eos, mask, cls,
                     encode_fn=lambda t: tok(t, add_special_tokens=False)["input_ids"],
                     kind="pretrained", backend=tok)


def for_transformers(tok: Tokenizer, cls_first: bool) -> Any:
    """`tok` as a `transformers` tokenizer that `save_pretrained` writes and `AutoTokenizer`
    opens, encoding text to the very ids `tok.encode` gives; with `cls_first`, <cls> before
    them, as the classifier was trained. A pretrained tokenizer is returned as it was loaded."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if tok.kind == "pretrained":
        return tok.backend
    # a copy: the trial's own tokenizer stays as it was trained
    backend = _byte_backend() if tok.kind == "byte" else HFTokenizer.from_str(
        tok.backend.to_str())
    if cls_first:
        cls = processors.TemplateProcessing(single=f"{SPECIALS[3]} $A",
                                            special_tokens=[(SPECIALS[3], tok.cls_id)])
        backend.post_processor = processors.Sequence(
            [p for p in (backend.post_processor, cls) if p is not None])
    # byte encodes "<pad>" in a text as five bytes; bpe, like its tokenizers object, as <pad>
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=SPECIALS[0],
                                   eos_token=SPECIALS[1], mask_token=SPECIALS[2],
                                   cls_token=SPECIALS[3], split_special_tokens=tok.kind == "byte")


def _byte_backend() -> Any:
    """The byte tokenizer in the `tokenizers` library: GPT-2's byte-level alphabet (each byte
    one printable character) as a BPE vocabulary with no merges, each character's id its byte
    value, and the four specials after them (256..259)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab.update({special: 256 + i for i, special in enumerate(SPECIALS)})
    backend = HFTokenizer(BPE(vocab=vocab, merges=[]))
    # no splitting into words: with no merges it could not change the ids, only cost time
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIALS))
    return backend
