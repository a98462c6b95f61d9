"""A non-editable install: shipped recipes and sample faces resolve as package data from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_recipes_and_samples_are_package_resources() -> None:
    assert resources.files("facedeg.recipes").joinpath("mixed.yaml").is_file()
    assert any(p.name.endswith(".png") for p in resources.files("facedeg.samples").iterdir())


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_builds_from_anywhere(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("facedeg", "cli", "recipes", "hifacegan"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    if not (src / "README.md").exists():
        (src / "README.md").write_text("facedeg\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # dependencies (and setuptools) from the test environment; facedeg itself only from the install below
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation",
               "--no-index", "--quiet", str(src)]
    subprocess.run(install, check=True, capture_output=True, cwd=tmp_path)
    shutil.rmtree(src)  # nothing may still point at the source tree

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([py, "-c", "import facedeg; print(facedeg.__file__)"], capture_output=True, text=True,
                           check=True, cwd=work, env=env).stdout
    assert str(Path(site)) in where
    cmd = [str(venv / "bin" / "facedeg"), "build", "--recipe", "mixed", "--out", "demo", "--size", "32", "--variants", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert "recipe mixed" in result.stdout and (work / "demo" / "dataset.json").is_file()
