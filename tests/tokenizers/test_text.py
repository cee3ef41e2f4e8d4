"""The SentencePiece text tokenizer: training, lossless round-trips, byte fallback, truncation, errors."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest

from videopoet.errors import UserError
from videopoet.tokenizers.text import (
    MIN_VOCAB_SIZE,
    TextTokenizer,
    TextTokenizerConfig,
    TextTokenizerError,
    train_text_tokenizer,
)

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white"]
SHAPES = ["circle", "square", "triangle", "star", "hexagon"]
MOTIONS = [
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "spinning",
    "bouncing",
    "standing still",
]
UNICODE_CAPTIONS = [
    "un cercle rouge qui bouge à gauche",
    "ein grünes Quadrat, das sich nach rechts bewegt",
    "赤い円が左に動く",
    "синий треугольник движется вверх",
]


def make_captions(count: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    captions = [
        f"a {rng.choice(COLORS)} {rng.choice(SHAPES)} {rng.choice(MOTIONS)} with a {rng.randint(200, 900)} hz tone"
        for _ in range(count)
    ]
    return captions + UNICODE_CAPTIONS


SMALL = TextTokenizerConfig(vocab_size=600, max_length=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextTokenizer, Path]:
    out = tmp_path_factory.mktemp("text_tok")
    return train_text_tokenizer(make_captions(), out, SMALL), out


def test_train_writes_folder_and_loads_back(trained: tuple[TextTokenizer, Path]) -> None:
    tok, out = trained
    assert (out / "text.model").is_file()
    meta = json.loads((out / "config.json").read_text())
    assert meta["vocab_size"] == tok.vocab_size
    assert meta["config"]["vocab_size"] == 600
    assert MIN_VOCAB_SIZE < tok.vocab_size <= 600

    loaded = TextTokenizer.load(out)
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.config == tok.config
    caption = "a blue star spinning with a 440 hz tone"
    assert loaded.encode(caption) == tok.encode(caption)


def test_round_trip_is_lossless(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    texts = (
        make_captions(20, seed=1) + UNICODE_CAPTIONS + ["  extra  spaces ", "Tab\there", "", "UPPER case!"]
    )
    for text in texts:
        ids = tok.encode(text, max_length=1000)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text


def test_learned_pieces_compress_training_captions(
    trained: tuple[TextTokenizer, Path], tmp_path: Path
) -> None:
    caption = "a red circle moving left with a 300 hz tone"
    unigram, _ = trained
    assert len(unigram.encode(caption)) < len(caption)
    # SentencePiece 0.2's unigram seeding finds few whole words in templated captions; BPE does.
    bpe = train_text_tokenizer(
        make_captions(), tmp_path, TextTokenizerConfig(vocab_size=600, model_type="bpe")
    )
    assert len(bpe.encode(caption)) < len(caption) // 3


def test_byte_fallback_on_unseen_characters(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    for text in ["a 🎬 clapper", "한국어 자막", "Ωmega ∑ ≠ ∞", "\x00 control \x7f"]:
        ids = tok.encode(text, max_length=1000)
        assert tok.unk_id == 0
        assert 0 not in ids
        assert tok.decode(ids) == text


def test_no_bos_eos_pad_pieces(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    assert tok.id_to_piece(0) == "<unk>"
    assert tok.id_to_piece(1) == "<0x00>"
    assert tok.id_to_piece(256) == "<0xFF>"
    pieces = {tok.id_to_piece(i) for i in range(tok.vocab_size)}
    assert not pieces & {"<s>", "</s>", "<pad>"}


def test_truncation(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    long_text = " ".join(make_captions(10, seed=2))
    full = tok.encode(long_text, max_length=10_000)
    assert len(full) > 32
    assert tok.encode(long_text) == full[:32]  # default: config.max_length
    assert tok.encode(long_text, max_length=5) == full[:5]
    short = tok.encode("a red star")
    assert tok.encode("a red star", max_length=len(short)) == short
    with pytest.raises(TextTokenizerError, match="max_length"):
        tok.encode("a red star", max_length=0)


def test_truncation_never_splits_a_character(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    text = "🎬🎬🎬"  # unseen: four byte pieces each
    full = tok.encode(text, max_length=1000)
    for limit in range(1, len(full) + 1):
        ids = tok.encode(text, max_length=limit)
        assert ids == full[: len(ids)]
        assert limit - 3 <= len(ids) <= limit  # drops at most the 3 bytes of a partial character
        assert "\ufffd" not in tok.decode(ids)
        assert text.startswith(tok.decode(ids))


def test_encode_batch_matches_encode(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    texts = ["a red star", "赤い円", "", "a white hexagon bouncing with a 880 hz tone"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, max_length=3) == [tok.encode(t, max_length=3) for t in texts]


def test_decode_rejects_ids_outside_the_text_range(trained: tuple[TextTokenizer, Path]) -> None:
    tok, _ = trained
    with pytest.raises(TextTokenizerError, match="outside the text vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TextTokenizerError):
        tok.decode([-1])


def test_save_and_pickle(trained: tuple[TextTokenizer, Path], tmp_path: Path) -> None:
    tok, out = trained
    tok.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "text.model").read_bytes() == (out / "text.model").read_bytes()
    clone = pickle.loads(pickle.dumps(tok))  # data workers pickle the tokenizer
    assert clone.encode("a red star 🎬") == tok.encode("a red star 🎬")


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_training_is_deterministic(tmp_path: Path, model_type: str) -> None:
    config = TextTokenizerConfig(vocab_size=400, model_type=model_type)
    captions = make_captions(150, seed=3)
    a = train_text_tokenizer(captions, tmp_path / "a", config)
    b = train_text_tokenizer(iter(captions), tmp_path / "b", config)
    assert (tmp_path / "a" / "text.model").read_bytes() == (tmp_path / "b" / "text.model").read_bytes()
    assert (tmp_path / "a" / "config.json").read_text() == (tmp_path / "b" / "config.json").read_text()
    assert a.decode(a.encode("a red star 🎬", max_length=100)) == "a red star 🎬"
    assert b.vocab_size == a.vocab_size


def test_captions_file_skips_blank_lines(tmp_path: Path) -> None:
    captions = make_captions(150, seed=4)
    path = tmp_path / "captions.txt"
    path.write_text("\n\n".join(captions) + "\n   \n", encoding="utf-8")
    config = TextTokenizerConfig(vocab_size=400)
    from_file = train_text_tokenizer(str(path), tmp_path / "f", config)
    train_text_tokenizer(captions, tmp_path / "l", config)
    assert (tmp_path / "f" / "text.model").read_bytes() == (tmp_path / "l" / "text.model").read_bytes()
    assert from_file.decode(from_file.encode(captions[0])) == captions[0]


def test_vocab_size_larger_than_corpus_supports_is_capped(tmp_path: Path) -> None:
    tok = train_text_tokenizer(
        ["a red circle", "a blue square"] * 20, tmp_path, TextTokenizerConfig(vocab_size=5000)
    )
    assert MIN_VOCAB_SIZE < tok.vocab_size < 5000
    assert TextTokenizer.load(tmp_path).vocab_size == tok.vocab_size


def test_errors_are_user_errors(tmp_path: Path) -> None:
    assert issubclass(TextTokenizerError, UserError)

    with pytest.raises(TextTokenizerError, match="does not exist"):
        train_text_tokenizer(tmp_path / "missing.txt", tmp_path / "out")

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(TextTokenizerError, match="no captions"):
        train_text_tokenizer(empty, tmp_path / "out")
    with pytest.raises(TextTokenizerError, match="no captions"):
        train_text_tokenizer([], tmp_path / "out")

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(TextTokenizerError, match="not UTF-8"):
        train_text_tokenizer(latin1, tmp_path / "out")

    with pytest.raises(TextTokenizerError, match="must be strings"):
        train_text_tokenizer(["a red star", 3], tmp_path / "out")  # type: ignore[list-item]

    assert not (tmp_path / "out").exists()


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(TextTokenizerError, match=f"at least {MIN_VOCAB_SIZE}"):
        TextTokenizerConfig(vocab_size=100)
    with pytest.raises(TextTokenizerError, match="model_type"):
        TextTokenizerConfig(model_type="wordpiece")
    with pytest.raises(TextTokenizerError, match="character_coverage"):
        TextTokenizerConfig(character_coverage=0.0)
    with pytest.raises(TextTokenizerError, match="max_length"):
        TextTokenizerConfig(max_length=0)


def test_vocab_size_too_small_for_corpus_says_what_is_needed(tmp_path: Path) -> None:
    captions = ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"] * 5
    with pytest.raises(TextTokenizerError, match=r"too small for these captions: they need at least \d+"):
        train_text_tokenizer(captions, tmp_path / "out", TextTokenizerConfig(vocab_size=MIN_VOCAB_SIZE))


def test_load_errors(tmp_path: Path, trained: tuple[TextTokenizer, Path]) -> None:
    with pytest.raises(TextTokenizerError, match="does not exist"):
        TextTokenizer.load(tmp_path / "nowhere")
    with pytest.raises(TextTokenizerError, match="not a text tokenizer folder"):
        TextTokenizer.load(tmp_path)

    _, out = trained
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "text.model").write_bytes(b"not a model")
    (broken / "config.json").write_text((out / "config.json").read_text())
    with pytest.raises(TextTokenizerError, match="not a valid SentencePiece model"):
        TextTokenizer.load(broken)

    (broken / "text.model").write_bytes((out / "text.model").read_bytes())
    (broken / "config.json").write_text("{not json")
    with pytest.raises(TextTokenizerError, match="not a valid text tokenizer config"):
        TextTokenizer.load(broken)


def test_training_is_quiet(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    train_text_tokenizer(make_captions(50), tmp_path, TextTokenizerConfig(vocab_size=400))
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_captions_from_jsonl_rows(tmp_path: Path) -> None:
    from videopoet.tokenizers.text import read_captions

    path = tmp_path / "metadata.jsonl"
    path.write_text('{"file": "a.mp4", "caption": "a red circle"}\n{"file": "b.mp4"}\n\n{"caption": "a blue square"}\n')
    assert read_captions(path) == ["a red circle", "a blue square"]
    path.write_text("{not json\n")
    with pytest.raises(TextTokenizerError, match="line 1 is not JSON"):
        read_captions(path)
