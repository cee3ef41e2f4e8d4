"""The doctor: the lock, its agreement with pyproject.toml, and a broken torchaudio named in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from videopoet import doctor

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _locked_versions(path: Path) -> dict[str, set[str]]:
    """Every version the lock pins for each package, on any platform or Python."""
    versions: dict[str, set[str]] = {}
    for raw in path.read_text().splitlines():
        text = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            versions.setdefault(canonicalize_name(name), set()).add(version)
    return versions


def test_lock_agrees_with_pyproject() -> None:
    """Every declared package (runtime and dev) is locked, at versions inside the declared range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(t) for t in project["dependencies"] + project["optional-dependencies"]["dev"]]
    locked = _locked_versions(LOCK)
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is declared in pyproject.toml but not in {LOCK.name}"
        for version in locked[name]:
            assert req.specifier.contains(version, prereleases=True), f"{LOCK.name} pins {name}=={version} outside {req.specifier}"


def test_torch_and_torchaudio_are_an_exact_matching_pair() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, project["dependencies"])}
    assert specs["torch"].startswith("==") and specs["torchaudio"].startswith("==")
    assert specs["torch"] == specs["torchaudio"], "torchaudio's native library is built against one torch release"
    assert _locked_versions(LOCK)["torch"] == _locked_versions(LOCK)["torchaudio"]


def test_read_lock_applies_markers_and_rejects_ranges(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nfoo==1.0\n    # via bar\nbaz==2.0 ; python_full_version < '3.0'\nqux==3.0 ; sys_platform == 'nowhere'\n"
                    "Some_Name==4.0 ; python_full_version >= '3.0'\n")
    assert doctor.read_lock(lock) == {"foo": "1.0", "some-name": "4.0"}
    lock.write_text("foo>=1.0\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        doctor.read_lock(lock)


def test_this_environment_is_the_lock() -> None:
    """The suite itself runs on the lock: every quick check passes (a warning is allowed only for Python)."""
    checks = doctor.quick_checks()
    assert not doctor.failures(checks), [c.line() for c in doctor.failures(checks)]
    assert [c.name for c in checks if c.status == "warn"] in ([], ["python"])
    names = {c.name for c in checks}
    assert {"torch", "torchaudio", "deepspeed", "transformers", "av", "datasets", "torchaudio import"} <= names


def test_a_package_outside_the_declared_range_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transformers the project never declared (metadata first on the path, as a user's upgrade would be)."""
    info = tmp_path / "transformers-9.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 9.0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    bad = doctor.failures(doctor.check_packages(LOCK))
    assert [c.name for c in bad] == ["transformers"]
    assert bad[0].line().startswith("transformers 9.0.0 is outside videopoet's range")
    assert "pip install transformers==" in bad[0].fix


def test_disk_and_encoders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_encoders()[0].status == "ok"
    assert doctor.check_disk(tmp_path / "not" / "yet")[0].status in ("ok", "warn")
    monkeypatch.setattr(doctor, "MIN_FREE_GB", 1e9)
    assert doctor.check_disk(tmp_path)[0].status == "fail"


def test_an_os_error_outside_an_import_is_not_the_environments() -> None:
    try:
        raise OSError("disk full")
    except OSError as e:
        assert doctor.import_failure_line(e) is None


# ---- a torchaudio built for another torch, as a fresh install of torchaudio 2.11.1 beside torch 2.11.0 was ----


@pytest.fixture
def broken_env(tmp_path: Path) -> dict[str, str]:
    """Environment whose PYTHONPATH puts a torchaudio 2.11.1 first that fails to load its native library
    with the OSError the real one raised."""
    fake = tmp_path / "site"
    (fake / "torchaudio").mkdir(parents=True)
    (fake / "torchaudio" / "__init__.py").write_text(
        'raise OSError("Could not load this library: /x/torchaudio/lib/libtorchaudio.so") from OSError(\n'
        '    "/x/torchaudio/lib/libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")\n')
    (fake / "torchaudio-2.11.1.dist-info").mkdir()
    (fake / "torchaudio-2.11.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    return {**os.environ, "PYTHONPATH": str(fake)}


def _torch_base() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _expected_line() -> str:
    return (f"torchaudio 2.11.1 does not match torch {_torch_base()} (/x/torchaudio/lib/libtorchaudio.so: undefined symbol: "
            f"torch_exception_get_what_without_backtrace); fix: pip install torchaudio=={doctor.read_lock(LOCK)['torchaudio']}")


def _videopoet(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videopoet.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # fresh Python processes
def test_doctor_names_a_mismatched_torchaudio(broken_env: dict[str, str]) -> None:
    result = _videopoet("doctor", "--no-build", env=broken_env)
    assert result.returncode == 2, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("videopoet doctor:")]
    assert problems[0] == f"videopoet doctor: {_expected_line()}"
    assert "Traceback" not in result.stderr
    data = json.loads(_videopoet("doctor", "--no-build", "--json", env=broken_env).stdout)
    assert data["ok"] is False
    assert {c["name"] for c in data["checks"] if c["status"] == "fail"} == {"torchaudio import", "torchaudio"}


@pytest.mark.slow  # fresh Python processes
def test_commands_print_the_doctors_line_and_exit_2(broken_env: dict[str, str], tmp_path: Path) -> None:
    for args in (["--help"], ["--version"]):
        assert _videopoet(*args, env=broken_env).returncode == 0
    for args in (["demo", "--out", str(tmp_path / "demo")], ["media", "probe", str(tmp_path / "x.mp4")]):
        result = _videopoet(*args, env=broken_env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [f"videopoet: error: {_expected_line()} (run `videopoet doctor` for every check)"]


@pytest.mark.slow  # fresh Python processes
def test_the_test_suite_stops_with_the_doctors_line_first(broken_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_vocab.py"],
                            env=broken_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    first = (result.stdout + result.stderr).strip().splitlines()[0]
    assert first == f"Exit: videopoet doctor: {_expected_line()}"
