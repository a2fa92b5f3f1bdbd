"""Tokenizers for the transformers trainer: `byte` (no training), `bpe` (trained on the
study's own corpora with the `tokenizers` library, cached), or a local pretrained directory.
Each becomes a `transformers` tokenizer for a kept model (`for_transformers`)."""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError

SPECIALS = ("<pad>", "<eos>", "<mask>", "<cls>")
#: how training framed and cut one text, per objective: <cls> first (a sequence head reads
#: it), and the side a text longer than the context loses — a classifier saw its start
#: (`lm_data.classify_batch`), a language model continues its end
FRAMING = {"classify": (True, "right"), "regression": (True, "right"),
           "causal_lm": (False, "left"), "mlm": (False, "right")}
#: a causal LM's prompt keeps the context less this share of it: room to generate in, as
#: generate() refuses a prompt as long as its max_length (the model's positions)
ROOM = 4


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
    if _byte_export(tok):
        # a kept model's byte tokenizer cuts texts at the context, as its pipelines need:
        # training on it again reads whole texts, the very ids, with the byte tokenizer
        return byte_tokenizer()
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    mask = tok.mask_token_id if tok.mask_token_id is not None else pad
    cls = tok.cls_token_id if tok.cls_token_id is not None else eos
    if eos is None:
        raise AutostageError(f"model.tokenizer: {path!r} has no end-of-text token")
    return Tokenizer(len(tok), pad, eos, mask, cls,
                     encode_fn=lambda t: tok(t, add_special_tokens=False)["input_ids"],
                     kind="pretrained", backend=tok)


def _byte_export(tok: Any) -> bool:
    """Whether `tok` is the byte tokenizer as `for_transformers` writes it: its vocabulary is
    the byte-level alphabet (each byte's id its value) and the four specials after it."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab.update({special: 256 + i for i, special in enumerate(SPECIALS)})
    return len(tok) == len(vocab) and tok.get_vocab() == vocab


def for_transformers(tok: Tokenizer, objective: str, max_length: int | None = None) -> Any:
    """`tok` as a `transformers` tokenizer that `save_pretrained` writes and `AutoTokenizer`
    opens, framing and cutting a text as the model of `objective` was trained on it: the very
    ids `tok.encode` gives, <cls> before them for a sequence head, at most `max_length` (the
    trainer's context) — `model_max_length`, so `truncation=True` cuts where training did,
    on the side training did (`FRAMING`). The byte tokenizer cuts there by itself, so
    pipelines run with their defaults; bpe and pretrained ones cut with `truncation=True`.
    Without `max_length`, nothing is cut."""
    cls_first, side = FRAMING[objective]
    if tok.kind == "pretrained":
        out = copy.deepcopy(tok.backend)  # the trial's own stays as it was loaded
    else:
        out = _fast(tok, cls_first, _cut(tok, objective, max_length), side,
                    split_specials=tok.kind == "byte" and objective != "mlm")
    # a classifier pads on the right as in training; a causal LM on the left, so a batch's
    # prompts all end where generation starts. Set as init kwargs: save_pretrained writes
    # those, not attributes set later
    settings = {"truncation_side": side, "padding_side": side}
    if max_length:
        settings["model_max_length"] = max_length
    for key, value in settings.items():
        setattr(out, key, value)
        out.init_kwargs[key] = value
    return out


def _cut(tok: Tokenizer, objective: str, max_length: int | None) -> int | None:
    """The most bytes the byte tokenizer keeps of a text: what fits the context beside a
    sequence head's <cls>, or a causal LM's prompt beside room to generate in."""
    if not max_length or tok.kind != "byte":
        return None
    if objective == "causal_lm":
        return max_length - max(1, max_length // ROOM)
    return max_length - FRAMING[objective][0]


def _fast(tok: Tokenizer, cls_first: bool, cut: int | None, side: str,
          split_specials: bool) -> Any:
    """A `PreTrainedTokenizerFast` of a byte or bpe tokenizer (a copy: the trial's own stays
    as it was trained); `cut`: the most bytes a text keeps, cut on `side`."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = _byte_backend(cut, side) if tok.kind == "byte" else HFTokenizer.from_str(
        tok.backend.to_str())
    if cls_first:
        cls = processors.TemplateProcessing(single=f"{SPECIALS[3]} $A",
                                            special_tokens=[(SPECIALS[3], tok.cls_id)])
        backend.post_processor = processors.Sequence(
            [p for p in (backend.post_processor, cls) if p is not None])
    # byte encodes "<pad>" in a text as five bytes — but an mlm's "<mask>" as its mask, or a
    # fill-mask pipeline finds none; bpe, like its tokenizers object, as <pad>
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=SPECIALS[0],
                                   eos_token=SPECIALS[1], mask_token=SPECIALS[2],
                                   cls_token=SPECIALS[3], split_special_tokens=split_specials)


def _byte_backend(cut: int | None = None, side: str = "right") -> Any:
    """The byte tokenizer in the `tokenizers` library: GPT-2's byte-level alphabet (each byte
    one printable character) as a BPE vocabulary with no merges, each character's id its byte
    value, and the four specials after them (256..259). With `cut`, a text keeps at most
    that many bytes, its first or (side "left") last: one character is one byte and one id
    after the byte-level normalizer, so the cut is exactly training's (transformers resets
    the backend's own truncation on every call that does not ask for it)."""
    from tokenizers import AddedToken, Regex, decoders, normalizers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab.update({special: 256 + i for i, special in enumerate(SPECIALS)})
    backend = HFTokenizer(BPE(vocab=vocab, merges=[]))
    # bytes as characters in the normalizer, not the pre-tokenizer, so the cut counts bytes;
    # no splitting into words: with no merges it could not change the ids, only cost time
    steps = [normalizers.ByteLevel()]
    if cut is not None:
        # anchored at the start: one match, linear in the text (a look-behind was not)
        pattern = rf"\A[\s\S]{{{cut}}}\K[\s\S]+" if side == "right" else \
            rf"\A[\s\S]+(?=[\s\S]{{{cut}}}\z)"
        steps.append(normalizers.Replace(Regex(pattern), ""))
    backend.normalizer = normalizers.Sequence(steps)
    backend.decoder = decoders.ByteLevel()
    # matched in the normalized text (printable ASCII maps to itself): after the cut, so a
    # "<mask>" cannot make a text longer than `cut`
    backend.add_special_tokens([AddedToken(s, special=True, normalized=True)
                                for s in SPECIALS])
    return backend
