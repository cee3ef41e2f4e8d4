"""Shared pytest fixtures, and the doctor's check of the environment before anything is collected."""

from pathlib import Path

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the `gpu` mark, then stop the run before collection when a package does not import
    (torchaudio built for another torch, say): the doctor's one line, not eleven collection errors with a
    dlopen traceback each."""
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA GPU (tests/gpu; skipped without one; benchmarks/gpu_check.sh runs them)"
    )
    from videopoet.doctor import failures, quick_checks

    problems = failures(quick_checks())
    if problems:
        lines = "\n".join(f"videopoet doctor: {c.line()}" for c in problems)
        pytest.exit(f"{lines}\n(the environment is not the lock's: run `videopoet doctor`, or `make clean install`)", returncode=3)


def pytest_report_header(config: pytest.Config) -> str:
    """What the suite runs on, as the doctor sees it."""
    from videopoet.doctor import find_lock, quick_checks

    checks = quick_checks()
    key = [c.detail for c in checks if c.name in ("torch", "torchaudio", "deepspeed", "transformers", "av", "datasets")]
    warnings = [f"videopoet doctor warns: {c.line()}" for c in checks if c.status == "warn"]
    return [f"videopoet doctor: {', '.join(key)} (lock: {find_lock()})", *warnings]


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The real test media in ../shared/media (see its SOURCES.md); skip the test when it is absent."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "media"
    if not root.is_dir():
        pytest.skip(f"shared test media not found at {root}")
    return root


@pytest.fixture(scope="session")
def records_vocab():
    """The shared vocabulary of the synthetic token records (`make_records`)."""
    from videopoet.vocab import SharedVocab

    return SharedVocab(text_size=300, video_bits=6, audio_levels=2, audio_codebook_size=16)


def _make_records(n: int, seed: int = 0):
    """`n` random token records (a `datasets.Dataset`): 1-3 latent frames of 4x4, a caption of 0-8 ids,
    audio on two records of three."""
    import datasets

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t, audio = int(rng.integers(1, 4)), bool(i % 3)
        rows.append({
            "clip_id": f"clip{i}",
            "text_ids": rng.integers(0, 300, int(rng.integers(0, 9))).tolist(),
            "video_ids": rng.integers(0, 64, t * 16).tolist(),
            "video_shape": [t, 4, 4],
            "audio_ids": rng.integers(0, 16, 20).tolist() if audio else [],
            "audio_shape": [2, 10] if audio else [0, 0],
            "height": 32,
            "width": 32,
        })  # fmt: skip
    return datasets.Dataset.from_list(rows)


@pytest.fixture(scope="session")
def make_records():
    """`make_records(n, seed=0)`: random token records over `records_vocab`."""
    return _make_records


@pytest.fixture(scope="session")
def token_records(tmp_path_factory: pytest.TempPathFactory, records_vocab) -> Path:
    """A token records folder (64 records and their vocabulary), as `videopoet tokenize` writes one."""
    from videopoet.data.loader import RECORDS_DIR, VOCAB_FILE

    path = tmp_path_factory.mktemp("tokens")
    _make_records(64).save_to_disk(str(path / RECORDS_DIR))
    records_vocab.save(path / VOCAB_FILE)
    return path
