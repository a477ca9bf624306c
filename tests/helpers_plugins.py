"""Installing a test plug-in as a third party's distribution would be: its module and a
dist-info declaring the `featurestore.features` entry point, in a folder put on PYTHONPATH."""

from __future__ import annotations

import shutil
from pathlib import Path


def install_plugin(site: Path, source: str, module: str, feature: str, cls: str) -> Path:
    """Copy tests/`source` into `site` as `module` with an entry point `feature = module:cls`."""
    shutil.copy(Path(__file__).with_name(source), site / f"{module}.py")
    name = module.replace("_", "-")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[featurestore.features]\n{feature} = {module}:{cls}\n")
    return site
