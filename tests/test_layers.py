"""The architecture's rules as tests: layers import only downwards (import-linter's contracts in
pyproject.toml, docs/design.md "Layers"), and no module grows past 450 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450


def test_layers_point_one_way() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_over_450_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "videopoet").rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_every_module_has_a_mirror_test() -> None:
    """tests/ mirrors the package: `videopoet/a/b.py` is tested in `tests/a/test_b.py` (a module of a
    package split into several, like `data/ingest/`, may be tested as the package: `tests/data/test_ingest.py`)."""
    missing = []
    for path in sorted((ROOT / "videopoet").rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        rel = path.relative_to(ROOT / "videopoet")
        own = ROOT / "tests" / rel.parent / f"test_{rel.stem}.py"
        package = ROOT / "tests" / rel.parent.parent / f"test_{rel.parent.name}.py"
        if not own.is_file() and not (rel.parent != Path(".") and package.is_file()):
            missing.append(str(rel))
    assert not missing, f"modules without a mirror test: {missing}"
