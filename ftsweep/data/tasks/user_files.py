"""Reading the user's data files into records that remember where they came from.

Accepted: a `.jsonl` file (one JSON object a line), a `.json` file (a list of objects), a
`.parquet` file, or a folder holding a train split and optionally an eval split, either as files
named by split (`train.jsonl`, `validation.parquet`, `data/train-00000-of-00001.parquet`, ...)
or as a Hugging Face dataset saved with `save_to_disk` (read with pyarrow; `datasets` is not
needed). Every problem is a ConfigError naming the file, the line or row, and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftsweep.config import ConfigError

FILE_TYPES = (".jsonl", ".json", ".parquet", ".arrow")
EVAL_SPLITS = ("eval", "validation", "valid", "dev", "test")


@dataclass(frozen=True)
class Record:
    value: Any
    where: str  # "FILE:LINE" or "FILE row N", for error messages


def read_records(path: Path) -> list[Record]:
    """Every record of one data file, in file order."""
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise ConfigError(
            f"{path}: unsupported file type {suffix or '(none)'!r} (allowed: {', '.join(FILE_TYPES)})"
        )
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    return _read_table(path)


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    # Read as bytes and decode line by line, so a bad byte is reported on its own line.
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}:{number}: not UTF-8 text (byte {exc.start + 1} of the line)"
                ) from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            records.append(Record(value, f"{path}:{number}"))
    return records


def _read_json(path: Path) -> list[Record]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if not isinstance(value, list):
        raise ConfigError(
            f"{path}: expected a JSON list of examples, got {type(value).__name__} "
            "(or use .jsonl with one example a line)"
        )
    return [Record(item, f"{path} item {i}") for i, item in enumerate(value, start=1)]


def _read_table(path: Path) -> list[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            # `save_to_disk` writes Arrow's streaming format.
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"{path}: cannot read as {path.suffix[1:]} ({exc})") from None
    return [Record(row, f"{path} row {i}") for i, row in enumerate(table.to_pylist(), start=1)]


def _saved_split(folder: Path) -> list[Record]:
    """Records of one split written by `Dataset.save_to_disk`."""
    state = json.loads((folder / "state.json").read_text())
    files = [folder / f["filename"] for f in state.get("_data_files", [])]
    if not files:
        raise ConfigError(f"{folder / 'state.json'}: lists no data files")
    return [record for file in files for record in read_records(file)]


def _split_files(folder: Path, split: str) -> list[Path]:
    """Files of a split named by their stem: `train.jsonl`, `data/train-00000-of-00002.parquet`."""
    found = []
    for place in (folder, folder / "data"):
        for file in sorted(place.glob(f"{split}*")) if place.is_dir() else []:
            stem = file.name[: -len(file.suffix)] if file.suffix else file.name
            if (
                file.is_file()
                and file.suffix.lower() in FILE_TYPES
                and (stem == split or stem.startswith(f"{split}-"))
            ):
                found.append(file)
    return found


def read_folder(folder: Path) -> tuple[list[Record], list[Record] | None]:
    """(train records, eval records or None) from a folder of split files or a saved dataset."""
    if (folder / "dataset_dict.json").exists():
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        if "train" not in splits:
            raise ConfigError(
                f"{folder}: the saved dataset has no train split (it has: {', '.join(splits)})"
            )
        eval_name = next((s for s in EVAL_SPLITS if s in splits), None)
        return _saved_split(folder / "train"), _saved_split(
            folder / eval_name
        ) if eval_name else None
    if (folder / "state.json").exists():
        return _saved_split(folder), None
    train_files = _split_files(folder, "train")
    if not train_files:
        raise ConfigError(
            f"{folder}: no train file (expected train.jsonl, train.json or train.parquet, "
            "optionally beside eval/validation/test files, or a dataset saved with save_to_disk)"
        )
    train = [r for f in train_files for r in read_records(f)]
    for split in EVAL_SPLITS:
        eval_files = _split_files(folder, split)
        if eval_files:
            return train, [r for f in eval_files for r in read_records(f)]
    return train, None


def read_source(path: str, key: str = "data.path") -> tuple[list[Record], list[Record] | None]:
    """(train records, eval records or None) from a file or folder a config key names."""
    location = Path(path).expanduser()
    if not location.exists():
        raise ConfigError(f"{key}={path}: no such file or folder")
    if location.is_dir():
        return read_folder(location)
    return read_records(location), None
