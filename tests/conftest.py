"""Shared pytest fixtures."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The real test media in ../shared/media (see its SOURCES.md); skip the test when it is absent."""
    root = Path(__file__).resolve().parents[1].parent / "shared" / "media"
    if not root.is_dir():
        pytest.skip(f"shared test media not found at {root}")
    return root
