"""What `pip install nailong-bot` puts into an operator's environment.

The wheel is built from this checkout, its contents checked, then installed into a fresh virtual environment
(its dependencies from the package index, as an operator gets them), where a minimal NoneBot project loads the
plugin and decides an image on the bundled model, offline, without torch. The trainer is installed as
`nailong_trainer`: without the `train` extra its entry points say how to install it; with the extra's packages
present (taken from this test environment through a path file, since a second torch install costs gigabytes)
`nailong-trainer --help` runs from the wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "pip install 'nailong-bot[train]'"

# A NoneBot project of one file, as the README's "existing project" section has it, that also starts the plugin's
# runtime on the bundled model and decides a yellow square.
MINIMAL_PROJECT = """
import asyncio, io, json, sys
from pathlib import Path

import nonebot
from nonebot.adapters.onebot.v11 import Adapter
from PIL import Image

nonebot.init(driver="~fastapi")
nonebot.get_driver().register_adapter(Adapter)
plugin = nonebot.load_plugin("nailong_bot")

from nailong_bot import runtime
from nailong_bot.plugin import plugin_config


async def main() -> None:
    guard = await runtime.start(plugin_config, Path(sys.argv[1]))
    image = io.BytesIO()
    Image.new("RGB", (96, 96), (250, 210, 40)).save(image, "PNG")
    decision = await guard.decider.decide(image.getvalue())
    print(json.dumps({
        "name": plugin.metadata.name,
        "version": plugin.metadata.extra["version"],
        "model": str(guard.classifier.info.path),
        "model_version": guard.classifier.info.version,
        "score": decision.score,
        "torch_loaded": "torch" in sys.modules,
    }))
    await runtime.stop()


asyncio.run(main())
"""


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the plugin's settings or a virtual environment's traces."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NAILONG_", "ONEBOT_", "PYTHON")) and key != "VIRTUAL_ENV"
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, ROOT, cwd=out)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("nailong_bot-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> SimpleNamespace:
    """A fresh virtual environment with only `pip install <wheel>` done; commands run outside the checkout."""
    home = tmp_path_factory.mktemp("operator")
    venv = home / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=home).returncode == 0
    python = venv / "bin" / "python"
    done = run(python, "-m", "pip", "install", "--quiet", wheel, cwd=home, env=clean_environment())
    assert done.returncode == 0, done.stderr
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=home)
    return SimpleNamespace(home=home, python=python, bin=venv / "bin", site=Path(site.stdout.strip()))


def test_wheel_holds_the_plugin_the_model_and_the_trainer_under_its_own_name(wheel) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        model = archive.read("nailong_bot/models/nailong.onnx")
        recorded = archive.read("nailong_bot/models/nailong.onnx.sha256").decode().split()[0]
    version = wheel.name.split("-")[1]
    assert {name.split("/")[0] for name in names} == {
        "nailong_bot",
        "nailong_vision",
        "nailong_trainer",
        f"nailong_bot-{version}.dist-info",
    }
    assert hashlib.sha256(model).hexdigest() == recorded
    assert model == (ROOT / "models" / "nailong.onnx").read_bytes()
    assert "nailong_trainer/cli.py" in names and "nailong_trainer/__main__.py" in names
    assert {"nailong_bot/i18n/zh-CN.json", "nailong_bot/i18n/en-US.json"} <= set(names)  # the wording
    # No tests, no training data, no checkpoints, no caches.
    data_suffixes = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".csv", ".pt", ".pyc")
    assert not [name for name in names if "tests/" in name or "conftest" in name or name.endswith(data_suffixes)]
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(f"nailong_bot-{version}.dist-info/entry_points.txt").decode()
    assert "nailong-trainer = nailong_trainer.cli:main" in entry_points


def test_installed_plugin_loads_in_a_minimal_project_on_the_bundled_model(installed, wheel) -> None:
    project = installed.home / "project"
    project.mkdir()
    (project / "bot.py").write_text(MINIMAL_PROJECT, encoding="utf-8")
    env = clean_environment(LOCALSTORE_DATA_DIR=str(installed.home / "localstore"), ENVIRONMENT="prod")
    done = run(installed.python, "bot.py", installed.home / "data", cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["name"] == "奶龙守卫"
    assert report["version"] == wheel.name.split("-")[1]
    assert Path(report["model"]).is_relative_to(installed.site / "nailong_bot" / "models")
    assert 0.0 <= report["score"] <= 1.0
    assert report["torch_loaded"] is False


def test_installed_environment_has_no_package_called_trainer(installed) -> None:
    probe = "import importlib.util as u; print(u.find_spec('trainer'), u.find_spec('nailong_bot') is not None)"
    done = run(installed.python, "-c", probe, cwd=installed.home, env=clean_environment())
    assert done.stdout.split() == ["None", "True"], done.stderr


@pytest.mark.parametrize("command", [["nailong-trainer", "--help"], ["-m", "nailong_trainer", "--help"]])
def test_trainer_without_the_train_extra_says_how_to_install_it(installed, command) -> None:
    executable = installed.bin / command[0] if command[0] == "nailong-trainer" else installed.python
    arguments = command[1:] if command[0] == "nailong-trainer" else command
    done = run(executable, *arguments, cwd=installed.home, env=clean_environment())
    assert done.returncode == 1
    assert INSTALL_HINT in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr + done.stdout


def test_trainer_help_runs_from_the_wheel_with_the_train_extra(installed) -> None:
    # The train extra's packages (torch, timm, …) from this environment, after the venv's own site-packages: the
    # wheel's nailong_trainer comes first, and this checkout is not on the path (a .pth inside a path entry that
    # is not a site directory is not read).
    (installed.site / "train_extra.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    try:
        done = run(installed.bin / "nailong-trainer", "--help", cwd=installed.home, env=clean_environment())
        as_module = run(installed.python, "-m", "nailong_trainer", "--help", cwd=installed.home, env=clean_environment())
        where = run(
            installed.python, "-c", "import nailong_trainer; print(nailong_trainer.__file__)",
            cwd=installed.home, env=clean_environment(),
        )
    finally:
        (installed.site / "train_extra.pth").unlink()
    assert done.returncode == 0, done.stderr
    assert "nailong-trainer" in done.stdout and "export" in done.stdout
    assert as_module.returncode == 0 and as_module.stdout == done.stdout, as_module.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.site / "nailong_trainer")
