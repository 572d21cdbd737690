"""Where the model registry keeps a trained model's weights: `<project>/.ratchet/models/<name>/`.

The one definition of the registry's on-disk layout. It lives below both its users: the local backend
(`[model] name = "<registry name>"` loads a model the flywheel trained) and the flywheel's registry module,
which writes the models and their ledger rows.
"""

from __future__ import annotations

import re
from pathlib import Path

REGISTRY_SUBDIR = Path(".ratchet") / "models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_name(name: str) -> bool:
    """Whether `name` can name a registry model (and so cannot leave the registry dir)."""
    return bool(_NAME.match(name)) and ".." not in name


def check_name(name: str) -> str:
    if not valid_name(name):
        raise ValueError(f"registry model name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def model_dir(root: Path, name: str) -> Path:
    """The weights dir registry model `name` has (or will have) in the project at `root`."""
    return Path(root) / REGISTRY_SUBDIR / check_name(name)


def registry_model_dir(root: Path, name: str) -> Path | None:
    """The weights dir of registry model `name` in the project at `root`, or None when there is none."""
    if not valid_name(name):
        return None
    path = Path(root) / REGISTRY_SUBDIR / name
    return path.resolve() if (path / "config.json").is_file() else None
