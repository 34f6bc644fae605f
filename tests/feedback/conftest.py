"""Load the feedback modules straight from their files.

Importing ``nailong_bot.<module>`` runs the plugin's ``__init__``, which needs an initialised NoneBot
and the whole plugin; ``recent`` and ``corrections`` need neither, so their tests stay independent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "nailong_bot"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_nailong_feedback_{name}", _PLUGIN_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


recent = _load("recent")
corrections = _load("corrections")
