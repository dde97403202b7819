"""The SSM cores, one module each; importing this package imports every module in it, and each
registers its core (``ssm_cli.layers.registry.register_core``). Adding a core = adding its module
here, its ``conf/model/<name>.yaml`` and its tests."""
from __future__ import annotations

import importlib
import pkgutil

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_m.name}")
