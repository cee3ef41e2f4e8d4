"""Every registered tokenizer family's model is a `MediaTokenizer`: media in, ids out, ids back to media
of the same geometry, and a block of the shared vocabulary that holds every id it makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videopoet.tokenizers.base import MediaTokenizer
from videopoet.tokenizers.registry import FAMILIES
from videopoet.vocab import SharedVocab


def _media(modality: str, geometry: dict, rng: np.random.Generator) -> np.ndarray:
    if modality == "video":
        return rng.integers(0, 256, (2, geometry["frames"], geometry["height"], geometry["width"], 3), dtype=np.uint8)
    return (0.3 * rng.standard_normal((2, int(geometry["sample_rate"]) // 4))).astype(np.float32)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_is_a_media_tokenizer(name: str) -> None:
    family = FAMILIES[name]
    torch.manual_seed(0)
    model = family.build_model("tiny").eval()
    assert isinstance(model, MediaTokenizer) and model.modality == family.modality
    media = _media(model.modality, model.geometry(), np.random.default_rng(0))
    ids = model.encode_media(media)
    assert ids.dtype == np.int64 and ids.shape == (2, *model.ids_shape(media.shape[1:]))
    back = model.decode_media(ids, length=media.shape[1] if model.modality == "audio" else None)
    assert back.shape == media.shape
    vocab = SharedVocab(text_size=10, **{"video_bits": 0, "audio_levels": 0, "audio_codebook_size": 0, **model.vocab_share()})
    convert = vocab.video_to_global if model.modality == "video" else vocab.audio_to_global
    assert convert(ids).max() < vocab.size
