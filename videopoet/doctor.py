"""`videopoet doctor`: can this machine run the project, and if not, what to do about it.

Every check returns `Check`s: `ok`, `warn` (runs, but not as tested) or `fail` (will not run), each
failing one with a one-line fix. The module imports nothing heavy at import time: it has to work, and
name the cause, exactly when torch, torchaudio or PyAV do not import. The CLI uses `import_failure_line`
to turn an import error in any command into the doctor's one line (exit 2), and the test suite runs the
quick checks before it collects anything (tests/conftest.py).

The lock (`requirements.lock` at the root of a checkout) is what `make install` installs and what the tests
ran on; `make lock` writes it (docs/install.md).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOCK_NAME = "requirements.lock"
# The packages a user asks about first; the rest of the lock is checked as one line.
KEY_PACKAGES = ("torch", "torchaudio", "deepspeed", "transformers", "av", "datasets")
# Encoders the project writes with: H.264 video, AAC sound in MP4, Opus as the audio reference codec.
ENCODERS = ("libx264", "aac", "libopus")
TESTED_PYTHON = (3, 11)  # the Python CI and every measurement in docs/ ran on
MIN_PYTHON = (3, 10)
# `make demo` writes about 0.15 GB under runs/ (docs/results.md); paper-scale LLM checkpoints are GBs each.
MIN_FREE_GB = 2.0
WARN_FREE_GB = 20.0


@dataclass
class Check:
    """One finding: what was checked, how it stands, and for a problem the command that fixes it."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The one-line form: what is wrong and how to fix it."""
        return f"{self.detail}; fix: {self.fix}" if self.fix else self.detail


# ---- the lock -------------------------------------------------------------------------------------------


def find_lock() -> Path | None:
    """The lock of the checkout this package runs from (an editable install), or None (a wheel install)."""
    path = Path(__file__).resolve().parents[1] / LOCK_NAME
    return path if path.is_file() else None


def read_lock(path: str | Path, environment: dict[str, str] | None = None) -> dict[str, str]:
    """The pins of a lock that apply to this interpreter and platform (or `environment`'s markers):
    canonical package name -> version. The lock is `name==version [; marker]` per line, as uv writes it."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        requirement, _, marker = text.partition(";")
        name, sep, version = requirement.partition("==")
        if not sep or not version.strip():
            raise ValueError(f"{path}:{number}: not an exact pin: {raw.strip()!r}")
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            continue
        pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def _installed_version(name: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def declared_requirements(extras: Iterable[str] = ()) -> list[Any]:
    """videopoet's own requirements (packaging `Requirement`s) from its installed metadata, with `extras`."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    wanted = {"", *extras}
    out = []
    for text in md.requires("videopoet") or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
            out.append(req)
    return out


def runtime_closure() -> dict[str, Any]:
    """Every distribution videopoet needs at run time, found by walking installed metadata from its
    declared requirements: canonical name -> the requirement that brought it in. A missing one stays in
    the result (its requirements cannot be walked)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, Any] = {}
    todo = declared_requirements()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found[name] = req
        try:
            requires = md.requires(req.name) or []
        except md.PackageNotFoundError:
            continue
        wanted = {"", *req.extras}
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return found


def check_python() -> list[Check]:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return [Check("python", "fail", f"Python {version} is older than {'.'.join(map(str, MIN_PYTHON))}",
                      "use Python 3.11 (the version the lock is tested on)")]
    if sys.version_info[:2] != TESTED_PYTHON:
        tested = ".".join(map(str, TESTED_PYTHON))
        return [Check("python", "warn", f"Python {version}; the lock is tested on {tested} only",
                      f"use Python {tested} for the tested environment")]
    return [Check("python", "ok", f"Python {version} ({sys.executable})")]


def check_packages(lock: Path | None) -> list[Check]:
    """Declared ranges, and every runtime package against the lock: missing or out of range fails, a
    version other than the lock's (inside the range) warns."""
    try:
        from packaging.utils import canonicalize_name
    except ImportError:
        return [Check("packages", "fail", "the 'packaging' module is missing", "make install")]
    try:
        closure = runtime_closure()
    except Exception as e:  # noqa: BLE001 - a broken metadata folder is one more finding
        return [Check("packages", "fail", f"cannot read videopoet's installed metadata ({e})", "make install")]
    if not closure:
        return [Check("packages", "fail", "videopoet's metadata lists no requirements (not installed?)", "make install")]
    pins: dict[str, str] = {}
    checks: list[Check] = []
    if lock is None:
        checks.append(Check("lock", "warn", f"no {LOCK_NAME} beside this installation: versions not compared with it",
                            f"install from a checkout with `make install` (it installs {LOCK_NAME})"))
    else:
        try:
            pins = read_lock(lock)
        except (OSError, ValueError) as e:
            return [Check("lock", "fail", f"cannot read the lock: {e}", f"git checkout {LOCK_NAME}")]
    declared = {canonicalize_name(r.name): r for r in declared_requirements()}
    ordered = [canonicalize_name(n) for n in KEY_PACKAGES] + sorted(set(closure) - set(KEY_PACKAGES))
    others_ok = 0
    for name in ordered:
        if name not in closure:
            continue
        installed = _installed_version(name)
        pin = pins.get(name)
        install = f"pip install {name}=={pin}" if pin else "make install"
        key = name in KEY_PACKAGES
        if installed is None:
            checks.append(Check(name, "fail", f"{name} is not installed", install))
            continue
        spec = declared[name].specifier if name in declared else None
        if spec is not None and not spec.contains(installed, prereleases=True):
            checks.append(Check(name, "fail", f"{name} {installed} is outside videopoet's range {spec}", install))
        elif pin is not None and installed != pin:
            checks.append(Check(name, "warn", f"{name} {installed} is installed, the lock has {pin}", install))
        elif key:
            checks.append(Check(name, "ok", f"{name} {installed}" + (" (as locked)" if pin else "")))
        else:
            others_ok += 1
    if lock is not None:
        checks.append(Check("packages", "ok", f"{others_ok} more runtime packages as locked in {lock}"))
    return checks


# ---- native libraries ------------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    """The innermost useful message of an exception chain (dlopen's undefined symbol, not the wrapper)."""
    messages = []
    while exc is not None:
        messages.append(" ".join(str(exc).split()) or type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    return messages[-1]


def _base_version(version: str) -> str:
    return version.split("+", 1)[0]


def check_native(lock: Path | None) -> list[Check]:
    """torch, torchaudio's native library beside it, PyAV and SentencePiece import and work."""
    pins = {}
    if lock is not None:
        with contextlib.suppress(OSError, ValueError, ImportError):
            pins = read_lock(lock)
    checks: list[Check] = []
    torch_version = _installed_version("torch")
    try:
        import torch

        torch.ones(2).add_(1)
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        checks.append(Check("torch import", "ok", f"torch {torch.__version__} loads ({build})"))
    except Exception as e:  # noqa: BLE001 - any failure here is the finding
        fix = f"pip install --force-reinstall torch=={pins.get('torch', torch_version or '2.11.0')}"
        return [Check("torch import", "fail", f"torch {torch_version} does not load ({_error_text(e)})", fix)]

    audio_version = _installed_version("torchaudio")
    try:
        import torchaudio  # noqa: F401 - the import loads libtorchaudio

        checks.append(Check("torchaudio import", "ok", f"torchaudio {audio_version} native library loads beside torch"))
    except Exception as e:  # noqa: BLE001
        torch_base = _base_version(torch.__version__)
        matching = pins.get("torchaudio") if pins.get("torch") == torch_base else torch_base
        if audio_version is not None and _base_version(audio_version) != matching:
            detail = f"torchaudio {audio_version} does not match torch {torch_base} ({_error_text(e)})"
        else:
            detail = f"torchaudio {audio_version} does not load beside torch {torch_base} ({_error_text(e)})"
        checks.append(Check("torchaudio import", "fail", detail, f"pip install torchaudio=={matching}"))

    for module, dist in (("av", "av"), ("sentencepiece", "sentencepiece")):
        try:
            importlib.import_module(module)
            checks.append(Check(f"{module} import", "ok", f"{dist} {_installed_version(dist)} loads"))
        except Exception as e:  # noqa: BLE001
            pin = pins.get(dist)
            fix = f"pip install --force-reinstall {dist}=={pin}" if pin else "make install"
            checks.append(Check(f"{module} import", "fail", f"{dist} does not load ({_error_text(e)})", fix))
    return checks


def check_encoders() -> list[Check]:
    """PyAV's FFmpeg has the encoders the project writes with."""
    try:
        import av
    except Exception:  # noqa: BLE001 - reported by check_native
        return []
    missing = []
    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError or ValueError by version
            missing.append(name)
    if missing:
        return [Check("encoders", "fail", f"PyAV {av.__version__}'s FFmpeg lacks the {', '.join(missing)} encoder(s)",
                      f"pip install --force-reinstall av=={_installed_version('av')} (PyPI's wheels include them)")]
    return [Check("encoders", "ok", f"PyAV encoders {', '.join(ENCODERS)}")]


# ---- hardware, DeepSpeed, disk -------------------------------------------------------------------------------


def check_accelerator() -> list[Check]:
    """GPUs and their bf16 support, or the CPU's (which decides `precision: auto`)."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - reported by check_native
        return []
    if torch.cuda.is_available():
        checks = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            with torch.cuda.device(i):
                bf16 = torch.cuda.is_bf16_supported()
            checks.append(Check(f"gpu {i}", "ok" if bf16 else "warn",
                                f"{props.name}, {props.total_memory / 2**30:.0f} GiB, compute {props.major}.{props.minor}, "
                                + ("bf16" if bf16 else "no bf16: training runs in fp32"),
                                "" if bf16 else "use an Ampere or newer GPU for bf16"))
        return checks
    from videopoet.precision import cpu_has_fast_bf16

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    note = " (torch sees no GPU)" if torch.version.cuda else ""
    precision = "fast bf16, AMX (precision auto trains in bf16)" if cpu_has_fast_bf16() else "no fast bf16 (precision auto trains in fp32)"
    return [Check("accelerator", "ok", f"CPU only{note}: {cores} cores, {precision}")]


def check_deepspeed(build_ops: bool = True) -> list[Check]:
    """DeepSpeed imports, which accelerator it picks (as `videopoet train` would), and on the CPU whether
    its shared-memory allreduce op, which it compiles at start-up, builds here."""
    try:
        import torch
    except Exception:  # noqa: BLE001
        return []
    version = _installed_version("deepspeed")
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # what `videopoet train` sets without a GPU
    import logging

    # torch's extension loader warns that a CUDA build finds no CUDA runtime: true and beside the point here
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            import deepspeed.ops
            from deepspeed.accelerator import get_accelerator

            accelerator = get_accelerator()
    except Exception as e:  # noqa: BLE001
        return [Check("deepspeed", "fail", f"deepspeed {version} does not import ({_error_text(e)})",
                      "make install (DeepSpeed builds from source: it needs a C++ compiler)")]
    name = accelerator.device_name()
    if name != "cpu":
        return [Check("deepspeed", "ok", f"deepspeed {version}, accelerator {name}")]
    builder = accelerator.create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return [Check("deepspeed", "warn", f"deepspeed {version}, accelerator cpu: its shared-memory allreduce op is "
                      "not compatible here (ranks fall back to gloo's slower allreduce)", "apt-get install g++ ninja-build")]
    if not build_ops:
        return [Check("deepspeed", "ok", f"deepspeed {version}, accelerator cpu, shm allreduce op compatible (not built)")]
    from videopoet.llm.parallelize import use_environment_extensions_dir

    use_environment_extensions_dir()  # where training builds it too
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            builder.load(verbose=False)
    except Exception as e:  # noqa: BLE001
        return [Check("deepspeed", "fail", f"deepspeed {version}: its CPU op {builder.NAME} does not build ({_error_text(e)})",
                      "apt-get install g++ ninja-build python3-dev")]
    took = time.perf_counter() - start
    return [Check("deepspeed", "ok", f"deepspeed {version}, accelerator cpu, CPU op {builder.NAME} builds ({took:.1f} s)")]


def check_disk(runs: str | Path = "runs") -> list[Check]:
    """Free disk where runs are written (the nearest existing folder of `runs`)."""
    path = Path(runs).resolve()
    while not path.exists():
        path = path.parent
    free = shutil.disk_usage(path).free / 1e9
    detail = f"{free:.1f} GB free for {runs} (on {path})"
    if free < MIN_FREE_GB:
        return [Check("disk", "fail", detail + f"; below {MIN_FREE_GB:g} GB a run can fail mid-save (make demo writes 0.15 GB)", "free space, or write runs to another disk")]
    if free < WARN_FREE_GB:
        return [Check("disk", "warn", detail + "; paper-scale checkpoints take several GB each", "free space for real training runs")]
    return [Check("disk", "ok", detail)]


# ---- entry points ----------------------------------------------------------------------------------------------


def quick_checks(lock: Path | None = None) -> list[Check]:
    """What decides whether anything imports: Python, the packages against the lock, the native libraries."""
    lock = lock if lock is not None else find_lock()
    return check_python() + check_native(lock) + check_packages(lock)


def run_checks(lock: Path | None = None, runs: str | Path = "runs", build_ops: bool = True) -> list[Check]:
    """Every check, in the order `videopoet doctor` prints them."""
    lock = lock if lock is not None else find_lock()
    return quick_checks(lock) + check_encoders() + check_accelerator() + check_deepspeed(build_ops) + check_disk(runs)


def failures(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


def format_report(checks: list[Check], lock: Path | None) -> str:
    from videopoet import __version__

    lines = [f"videopoet doctor (videopoet {__version__}, lock: {lock or 'none found'})"]
    for c in checks:
        lines.append(f"  {c.status:<5} {c.name:<20} {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"  {'':<5} {'':<20} fix: {c.fix}")
    bad = failures(checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append(f"{len(bad)} problem(s), {warned} warning(s)" if bad or warned else "all checks passed")
    return "\n".join(lines)


def to_json(checks: list[Check], lock: Path | None) -> dict[str, Any]:
    from videopoet import __version__

    return {"videopoet": __version__, "lock": str(lock) if lock else None, "ok": not failures(checks),
            "checks": [asdict(c) for c in checks]}


def _raised_while_importing(exc: BaseException) -> bool:
    """Whether the exception came out of a module's top level (CPython drops importlib's own frames)."""
    if isinstance(exc, ImportError):
        return True
    return any(frame.f_code.co_name == "<module>" for frame, _ in traceback.walk_tb(exc.__traceback__))


def import_failure_line(exc: BaseException) -> str | None:
    """For an exception raised while importing a package: the doctor's line that names the cause, or
    None when the doctor finds the environment sound (then the exception is a bug and keeps its traceback)."""
    if not isinstance(exc, (ImportError, OSError)) or not _raised_while_importing(exc):
        return None
    problems = failures(quick_checks())
    return problems[0].line() if problems else None
