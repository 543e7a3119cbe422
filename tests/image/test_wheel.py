"""The wheel carries what fedgate needs beside its code: the default policy and catalogue (and their examples) and
the example jobs the demo submits, so that an installed fedgate (a wheel, the image) finds them where a checkout
has them (`fedgate.common.shipped`). Built for real with the Makefile's uv."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fedgate.common import shipped

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("policies", "examples")


def test_every_shipped_file_is_in_the_wheel(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "build", "--wheel", "-q", "-o", str(tmp_path), str(ROOT)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("fedgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in SHIPPED:
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files, folder
        missing = [str(p.relative_to(ROOT)) for p in files if f"fedgate/{p.relative_to(ROOT)}" not in names]
        assert not missing, f"not in the wheel (add a glob to [tool.setuptools.package-data] fedgate): {missing}"


def test_a_checkout_uses_its_own_folders_and_an_install_its_package_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shipped.shipped("policies") == ROOT / "policies"
    monkeypatch.setattr(shipped, "CHECKOUT", tmp_path)  # as in an installed wheel: no repository around the code
    found = shipped.shipped("policies")
    assert found.parent == Path(shipped.__file__).parents[1] and (found / "federation.yaml").is_file()
