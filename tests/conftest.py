"""Shared pytest fixtures, and the doctor's check of the environment before anything is collected."""

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Stop the run before collection when a package does not import (torchaudio built for another torch,
    say): the doctor's one line, not eleven collection errors with a dlopen traceback each."""
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
