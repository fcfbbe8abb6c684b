"""The UI ships inside the wheel: templates, static files and the vendored licenses."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "src" / "prompt_ledger" / "ui"


def test_every_template_and_static_file_is_in_the_wheel(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not on PATH")
    subprocess.run(
        [uv, "build", "--wheel", "-o", str(tmp_path), str(ROOT)], check=True, capture_output=True
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [p for p in UI.rglob("*") if p.is_file() and p.parent.name != "__pycache__"]
    missing = [
        str(p.relative_to(ROOT / "src"))
        for p in shipped
        if str(p.relative_to(ROOT / "src")) not in names
    ]
    assert missing == []


def test_vendored_libraries_keep_their_license_and_are_the_ones_pages_load() -> None:
    vendor = UI / "static" / "vendor"
    libraries = sorted(p for p in vendor.iterdir() if p.is_dir())
    assert [p.name for p in libraries] == ["htmx-2.0.11", "uplot-1.6.32"]
    for library in libraries:
        assert (library / "LICENSE").is_file(), library
    templates = "".join(p.read_text() for p in (UI / "templates").glob("*.html"))
    loaded = set(re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', templates))
    for path in loaded:
        assert (UI / "static" / path.removeprefix("/ui/static/")).is_file(), path
    assert not re.search(r'(?:src|href)="(?:https?:)?//', templates)  # nothing from other hosts
    assert "<script>" not in templates and " on" + "click=" not in templates
    assert "style=" not in templates
