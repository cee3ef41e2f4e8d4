"""Every error class a user can cause is a `UserError`, which the CLI prints as one line with exit 2; any
other exception is a bug and keeps its traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import videopoet
from videopoet.errors import UserError


def _error_classes() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(videopoet.__path__, "videopoet."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        found += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == info.name and issubclass(c, Exception)]
    return found


def test_every_error_class_of_the_package_is_a_user_error() -> None:
    classes = _error_classes()
    assert len(classes) >= 15  # media, config, checkpoints, tasks, generation, launch, training, ...
    assert [c.__qualname__ for c in classes if not issubclass(c, UserError)] == []


def test_a_user_error_is_one_line_at_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from videopoet.cli import main

    assert main(["media", "probe", "no/such/file.mp4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("videopoet: error: ") and "no such file" in err
