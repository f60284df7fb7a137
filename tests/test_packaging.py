"""An installed ``muse`` carries what it reads at run time: the wheel built from this tree holds
every prompt template and worked example, the demo catalog, the page and the migrations."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEFT_OUT = (".git", ".venv", ".muse", "build", "*.egg-info", "*cache*")


def test_the_wheel_carries_the_prompts_and_the_package_data(tmp_path):
    # Built from a copy, so that setuptools' build/ and egg-info land there, not in the checkout;
    # no build isolation, so nothing is downloaded (setuptools is in the venv: torch requires it).
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*LEFT_OUT))
    wheel_cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(tree)]
    subprocess.run([*wheel_cmd, "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"prompts/{p.name}" for p in (ROOT / "prompts").iterdir() if p.suffix in (".jinja", ".json")}
    assert len(templates) >= 10 and templates <= names, sorted(templates - names)
    assert "agent/api/static/index.html" in names and any(n.startswith("agent/data/") for n in names)
    assert any(n.startswith("agent/store/migrations/versions/") for n in names)
    assert not any(n.startswith(("tests/", "docs/")) for n in names)
