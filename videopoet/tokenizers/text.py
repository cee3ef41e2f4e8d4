"""Text tokenizer: a SentencePiece model trained on the captions.

The tokenizer is lossless. Training uses byte fallback, so any Unicode text encodes without unknown
tokens (a character the captions never showed becomes its UTF-8 bytes), and no normalization, so
`decode(encode(s)) == s` for every string `s` that fits in the length budget. The one exception is
U+2581 (LOWER ONE EIGHTH BLOCK), SentencePiece's own space marker, which decodes as a plain space.

Id layout of the text range (ids are local to the text range; `vocab.py` offsets them):
- 0: `<unk>` (SentencePiece requires one; with byte fallback `encode` never produces it);
- 1..256: the byte pieces `<0x00>` .. `<0xFF>`;
- 257..: the learned pieces.
There are no `<bos>`, `<eos>` or `<pad>` pieces: the shared vocabulary owns those special tokens.

Files in a tokenizer folder: `text.model` (the SentencePiece model) and `config.json` (the training
config and the actual vocabulary size).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from videopoet.config import from_dict, to_dict
from videopoet.errors import UserError

logger = logging.getLogger(__name__)

MODEL_FILE = "text.model"
CONFIG_FILE = "config.json"
FORMAT_NAME = "videopoet-text-tokenizer"
FORMAT_VERSION = 1

UNK_ID = 0
NUM_BYTE_PIECES = 256
# <unk>, the 256 byte pieces and the space marker "▁": no corpus can do with fewer pieces.
MIN_VOCAB_SIZE = 1 + NUM_BYTE_PIECES + 1
MODEL_TYPES = ("unigram", "bpe")


class TextTokenizerError(UserError):
    """A problem with the captions, the text tokenizer's options or a tokenizer folder."""


@dataclass
class TextTokenizerConfig:
    """Options for training the text tokenizer.

    `vocab_size` is a ceiling: when the captions cannot support that many pieces, training keeps
    the pieces they support (see `TextTokenizer.vocab_size` for the actual count).
    """

    vocab_size: int = 1000
    model_type: str = "unigram"  # "unigram" or "bpe"
    character_coverage: float = 1.0  # share of characters that get their own piece; the rest use bytes
    max_length: int = 64  # text budget in tokens: `encode` truncates to this by default
    seed: int = 0  # seeds SentencePiece's sampling, so training is deterministic
    max_sentences: int = 1_000_000  # captions sampled for training when there are more

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `TextTokenizerError` if an option is out of range."""
        if self.model_type not in MODEL_TYPES:
            raise TextTokenizerError(
                f"text tokenizer model_type must be one of {', '.join(MODEL_TYPES)}, got {self.model_type!r}"
            )
        if not isinstance(self.vocab_size, int) or self.vocab_size < MIN_VOCAB_SIZE:
            raise TextTokenizerError(
                f"text tokenizer vocab_size must be at least {MIN_VOCAB_SIZE} (1 unknown piece, "
                f"{NUM_BYTE_PIECES} byte pieces and the space piece), got {self.vocab_size!r}"
            )
        if not 0.0 < self.character_coverage <= 1.0:
            raise TextTokenizerError(
                f"text tokenizer character_coverage must be in (0, 1], got {self.character_coverage!r}"
            )
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise TextTokenizerError(f"text tokenizer max_length must be at least 1, got {self.max_length!r}")
        if not isinstance(self.max_sentences, int) or self.max_sentences < 1:
            raise TextTokenizerError(
                f"text tokenizer max_sentences must be at least 1, got {self.max_sentences!r}"
            )


class TextTokenizer:
    """A trained SentencePiece model with the videopoet conventions (see the module docstring)."""

    def __init__(self, model_proto: bytes, config: TextTokenizerConfig) -> None:
        self.config = config
        self._model_proto = model_proto
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.load_from_serialized_proto(model_proto)
        except RuntimeError as err:
            raise TextTokenizerError("the text tokenizer model is not a valid SentencePiece model") from err

    @classmethod
    def load(cls, directory: str | Path) -> TextTokenizer:
        """Load a tokenizer folder written by `train_text_tokenizer` or `save`."""
        directory = Path(directory)
        model_path = directory / MODEL_FILE
        config_path = directory / CONFIG_FILE
        if not directory.is_dir():
            raise TextTokenizerError(f"text tokenizer folder {directory} does not exist")
        if not model_path.is_file() or not config_path.is_file():
            raise TextTokenizerError(
                f"{directory} is not a text tokenizer folder: it needs {MODEL_FILE} and {CONFIG_FILE} "
                "(train one with train_text_tokenizer)"
            )
        try:
            meta = json.loads(config_path.read_text(encoding="utf-8"))
            config = from_dict(TextTokenizerConfig, meta["config"])
            expected_size = int(meta["vocab_size"])
        except (ValueError, KeyError, TypeError) as err:
            raise TextTokenizerError(f"{config_path} is not a valid text tokenizer config: {err}") from err
        tokenizer = cls(model_path.read_bytes(), config)
        if tokenizer.vocab_size != expected_size:
            raise TextTokenizerError(
                f"{model_path} has {tokenizer.vocab_size} pieces but {config_path} says {expected_size}"
            )
        return tokenizer

    def save(self, directory: str | Path) -> None:
        """Write `text.model` and `config.json` into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_bytes(self._model_proto)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "unk_id": UNK_ID,
            "config": to_dict(self.config),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @property
    def vocab_size(self) -> int:
        """Number of pieces: the size of the text range in the shared vocabulary."""
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        """Id of `<unk>` (always 0); `encode` never produces it."""
        return UNK_ID

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Encode `text`, keeping at most `max_length` ids (None: `config.max_length`).

        Truncation keeps the head and never splits a character's byte pieces, so the result can be
        a little shorter than `max_length`.
        """
        return self.encode_batch([text], max_length)[0]

    def encode_batch(self, texts: Iterable[str], max_length: int | None = None) -> list[list[int]]:
        """Encode several texts; truncation as in `encode`."""
        limit = self._resolve_max_length(max_length)
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"text tokenizer encodes str, got {type(text).__name__}")
        return [self._truncate(ids, limit) for ids in self._sp.encode(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        """Decode text-range ids back to a string."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise TextTokenizerError(
                    f"token id {i} is outside the text vocabulary [0, {self.vocab_size})"
                )
        return self._sp.decode(ids)

    def id_to_piece(self, token_id: int) -> str:
        """The piece string of one id (for inspection and debugging)."""
        return self._sp.id_to_piece(int(token_id))

    def _resolve_max_length(self, max_length: int | None) -> int:
        if max_length is None:
            return self.config.max_length
        if max_length < 1:
            raise TextTokenizerError(f"max_length must be at least 1, got {max_length}")
        return max_length

    def _truncate(self, ids: list[int], limit: int) -> list[int]:
        """Keep the first `limit` ids, dropping a trailing character that lost some of its bytes."""
        if len(ids) <= limit:
            return ids
        ids = ids[:limit]
        # Walk back over trailing byte pieces to the last UTF-8 lead byte; drop it if incomplete.
        continuation = 0
        for pos in range(len(ids) - 1, -1, -1):
            if not self._sp.is_byte(ids[pos]):
                break
            byte = int(self._sp.id_to_piece(ids[pos])[1:-1], 16)  # byte pieces read "<0xE6>"
            if byte & 0xC0 == 0x80:
                continuation += 1
                continue
            if _utf8_length(byte) > continuation + 1:
                return ids[:pos]
            break
        return ids

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, model_type={self.config.model_type!r})"


def _utf8_length(lead_byte: int) -> int:
    """Length of the UTF-8 sequence that starts with `lead_byte` (1 for ASCII or invalid bytes)."""
    if lead_byte >= 0xF0:
        return 4
    if lead_byte >= 0xE0:
        return 3
    if lead_byte >= 0xC0:
        return 2
    return 1


def read_captions(captions: Iterable[str] | str | Path) -> list[str]:
    """Captions from an iterable of strings, a UTF-8 file with one caption per line, or a `.jsonl` file
    whose rows have a `caption` field (such as a shapes dataset's metadata.jsonl); blanks skipped."""
    if isinstance(captions, (str, Path)):
        path = Path(captions)
        if not path.is_file():
            raise TextTokenizerError(f"captions file {path} does not exist")
        try:
            with path.open(encoding="utf-8") as f:
                lines = [line.rstrip("\n") for line in f]
            if path.suffix == ".jsonl":
                lines = [_caption_of_row(line, path, i + 1) for i, line in enumerate(lines) if line.strip()]
        except UnicodeDecodeError as err:
            raise TextTokenizerError(f"captions file {path} is not UTF-8 text: {err}") from err
        source = f"captions file {path}"
    else:
        lines = list(captions)
        source = "the captions"
        for index, line in enumerate(lines):
            if not isinstance(line, str):
                raise TextTokenizerError(f"captions must be strings; item {index} is {type(line).__name__}")
    kept = [line for line in lines if line.strip()]
    if not kept:
        raise TextTokenizerError(f"{source} has no captions (only blank lines or nothing at all)")
    return kept


def _caption_of_row(line: str, path: Path, number: int) -> str:
    try:
        row = json.loads(line)
    except ValueError as err:
        raise TextTokenizerError(f"{path} line {number} is not JSON: {err}") from None
    caption = row.get("caption") if isinstance(row, dict) else None
    if caption is not None and not isinstance(caption, str):
        raise TextTokenizerError(f"{path} line {number}: caption must be a string")
    return caption or ""


def train_text_tokenizer(
    captions: Iterable[str] | str | Path,
    out_dir: str | Path,
    config: TextTokenizerConfig | None = None,
) -> TextTokenizer:
    """Train a SentencePiece tokenizer on `captions`, save it to `out_dir` and return it.

    `captions` is an iterable of strings or the path of a UTF-8 file with one caption per line
    (blank lines are skipped). The captions are read into memory. Training the same captions with
    the same config gives byte-identical files.
    """
    config = config or TextTokenizerConfig()
    config.validate()
    sentences = read_captions(captions)

    spm.set_random_generator_seed(config.seed)
    model = io.BytesIO()
    options = dict(
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        hard_vocab_limit=False,  # a small corpus gets fewer pieces instead of an error
        character_coverage=config.character_coverage,
        byte_fallback=True,
        unk_id=UNK_ID,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        normalization_rule_name="identity",  # lossless: no NFKC, no whitespace cleanup
        remove_extra_whitespaces=False,
        input_sentence_size=config.max_sentences,
        shuffle_input_sentence=True,
        num_threads=1,  # determinism
        minloglevel=2,  # silence the C++ training log
    )
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **options)
    except (RuntimeError, ValueError) as err:
        raise TextTokenizerError(_explain_training_error(err, config)) from err

    tokenizer = TextTokenizer(model.getvalue(), config)
    if tokenizer.vocab_size < config.vocab_size:
        logger.info(
            "text tokenizer has %d pieces, fewer than the vocab_size %d asked for: the captions support no more",
            tokenizer.vocab_size,
            config.vocab_size,
        )
    tokenizer.save(out_dir)
    return tokenizer


def _explain_training_error(err: Exception, config: TextTokenizerConfig) -> str:
    """Turn a SentencePiece training error into one line a user can act on."""
    message = str(err)
    too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_small:
        needed = int(too_small.group(2))
        return (
            f"text tokenizer vocab_size {config.vocab_size} is too small for these captions: "
            f"they need at least {needed} (1 unknown piece, {NUM_BYTE_PIECES} byte pieces and one piece "
            "per distinct character); raise vocab_size or lower character_coverage"
        )
    # Keep SentencePiece's own words, without its "INTERNAL: src/file.cc(123) [check]" prefix.
    reason = message.split("] ", 1)[-1].strip() or message.strip()
    return f"text tokenizer training failed: {reason}"
