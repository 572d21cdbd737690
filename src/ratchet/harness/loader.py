"""Loading a harness directory: its files, its knobs, and a fingerprint that names this exact version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ratchet.config import ConfigError
from ratchet.harness.params import HarnessParams, parse_params

# What travels into the sandbox. Anything else in the directory (caches, notes) stays out.
HARNESS_GLOBS = ("harness.py", "params.toml", "rules.md", "prompts/*", "skills/*.py")
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Harness:
    root: Path
    files: dict[str, str]  # relative path -> text
    params: HarnessParams
    fingerprint: str

    @property
    def name(self) -> str:
        return self.root.name


def harness_files(root: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for pattern in HARNESS_GLOBS:
        for path in sorted(root.glob(pattern)):
            if not path.is_file():
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; harness files must be small text")
            files[path.relative_to(root).as_posix()] = path.read_text()
    return files


def fingerprint_files(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
    return h.hexdigest()[:16]


def harness_from_files(root: Path, files: dict[str, str]) -> Harness:
    if "harness.py" not in files:
        raise ConfigError(f"{root}: no harness.py; a harness dir needs harness.py defining solve(task, ctx)")
    try:
        compile(files["harness.py"], str(root / "harness.py"), "exec")
    except SyntaxError as e:
        raise ConfigError(f"{root / 'harness.py'}:{e.lineno}: syntax error: {e.msg}") from None
    params = parse_params(files.get("params.toml", ""), str(root / "params.toml"))  # no file: no knobs
    return Harness(root=root, files=files, params=params, fingerprint=fingerprint_files(files))


def load_harness(root: str | Path) -> Harness:
    root = Path(root).resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: harness directory not found")
    return harness_from_files(root, harness_files(root))
