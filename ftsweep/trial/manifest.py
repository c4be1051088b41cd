"""A manifest in every checkpoint ftsweep writes, checked before anything in it is loaded.

Resuming a trial loads its checkpoint with pickle underneath (DeepSpeed unpickles ZeRO states
with torch.load; the Trainer reads RNG and optimizer files), and trial ids and
folder names are predictable. So the HF Trainer's `on_save` (after `_save_checkpoint` wrote
`checkpoint-N`) writes `ftsweep-manifest.json` into it: the SHA-256 of every file, and an
HMAC-SHA256 of that list keyed by `ftsweep.trust.secret_key()`, a key kept outside RESULTS.
`verify_manifest` (called by `ftsweep.trial.checkpoints.last_checkpoint`) refuses a folder
whose files, links or manifest do not match.

On a worker group every rank writes its shard first (a barrier), then rank 0 hashes the
folder, which every rank wrote into (RESULTS on one shared file system, docs/cluster.md).
Without one (`storage`, an object store), each node holds only its own ranks' files: one rank
per node hashes those, rank 0 signs them all, and each node copies its files to the store,
where a retry finds the whole checkpoint (`ftsweep.trial.checkpoints`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import stat
from pathlib import Path

MANIFEST_NAME = "ftsweep-manifest.json"
VERSION = 1
_CHUNK = 1 << 20


class CheckpointRefused(RuntimeError):
    """A checkpoint that ftsweep will not load; the message says why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` (but the manifest) by relative path -> SHA-256;
    a link or any other kind of entry is refused."""
    found: dict[str, str] = {}
    for current, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            path = Path(current) / name
            mode = os.lstat(path).st_mode
            relative = path.relative_to(folder).as_posix()
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise CheckpointRefused(f"{relative} is not a plain file (a link?)")
            if relative != MANIFEST_NAME:
                found[relative] = _sha256(path)
    return found


def _signature(key: bytes, folder_name: str, files: dict[str, str]) -> str:
    body = json.dumps(
        {"version": VERSION, "folder": folder_name, "files": files},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def write_manifest(
    folder: Path, key: bytes | None = None, files: dict[str, str] | None = None
) -> Path:
    """Write the signed manifest of `folder` (mode 0600, atomically): of every file in it, or
    of `files` (relative path -> SHA-256) where they were hashed on several nodes."""
    from ftsweep.trust import secret_key

    folder = Path(folder)
    key = secret_key() if key is None else key
    files = _files(folder) if files is None else files
    manifest = {
        "version": VERSION,
        "folder": folder.name,
        "files": files,
        "hmac": _signature(key, folder.name, files),
    }
    target = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def verify_manifest(folder: Path, key: bytes | None = None) -> None:
    """Raise CheckpointRefused unless `folder` holds exactly the files its manifest signs."""
    from ftsweep.trust import secret_key

    folder = Path(folder)
    key = secret_key() if key is None else key
    if os.path.islink(folder) or not folder.is_dir():
        raise CheckpointRefused("not a folder of its own (a link?)")
    manifest_path = folder / MANIFEST_NAME
    try:
        fd = os.open(manifest_path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CheckpointRefused(
            f"it has no {MANIFEST_NAME}: ftsweep did not finish writing it, or did not write it"
        ) from None
    except OSError as exc:
        raise CheckpointRefused(f"its {MANIFEST_NAME} cannot be read ({exc})") from None
    try:
        with os.fdopen(fd) as handle:
            manifest = json.load(handle)
        files, signature = manifest["files"], manifest["hmac"]
        if not isinstance(files, dict) or not isinstance(signature, str):
            raise TypeError("files or hmac of the wrong type")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointRefused(f"its {MANIFEST_NAME} is not a manifest ({exc})") from None
    expected = _signature(key, folder.name, files)
    if not hmac.compare_digest(expected, signature):
        raise CheckpointRefused(
            f"its {MANIFEST_NAME} is not signed with this user's key (made elsewhere, or "
            "edited; see FTSWEEP_SECRET_KEY)"
        )
    actual = _files(folder)
    if actual != files:
        changed = sorted(k for k in files.keys() & actual.keys() if files[k] != actual[k])
        added = sorted(actual.keys() - files.keys())
        missing = sorted(files.keys() - actual.keys())
        parts = [
            f"{label}: {', '.join(names[:5])}"
            for label, names in (("changed", changed), ("added", added), ("missing", missing))
            if names
        ]
        raise CheckpointRefused("its files differ from its manifest (" + "; ".join(parts) + ")")


def manifest_callback():
    """A TrainerCallback whose `on_save` signs the checkpoint the Trainer has just written (for
    a plain Trainer; ftsweep's own signs inside its timed save)."""
    from transformers import TrainerCallback

    class ManifestCallback(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            sign_saved_checkpoint(args, state)

    return ManifestCallback()


def sign_saved_checkpoint(args, state, uri: str | None = None) -> None:
    """Sign the checkpoint the Trainer has just written for `state.global_step`; with `uri`
    (no shared disk), sign what every node wrote and publish it there."""
    import torch.distributed as dist
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    # Every rank has written its part (DeepSpeed's shards) before rank 0 hashes them.
    group = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if group:
        dist.barrier()
    folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
    if uri is None:
        if state.is_world_process_zero and folder.is_dir():
            write_manifest(folder)
        return
    from ftsweep.trial.checkpoint_store import prune_checkpoints, publish_checkpoint

    files = None
    if group:
        # One rank per node hashes its node's files; rank 0 signs the union.
        own = _files(folder) if state.is_local_process_zero and folder.is_dir() else {}
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, own)
        files = {name: digest for part in parts for name, digest in part.items()}
    if state.is_world_process_zero:
        write_manifest(folder, files=files)
    if state.is_local_process_zero:
        publish_checkpoint(folder, uri)
    if group:
        dist.barrier()  # the whole checkpoint is in the store before an older one goes
    if state.is_world_process_zero:
        prune_checkpoints(uri, keep=folder.name)
    elif state.is_local_process_zero:
        # The Trainer rotates checkpoints on rank 0's node only; this node keeps the latest too.
        for older in folder.parent.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            if older.name != folder.name:
                shutil.rmtree(older, ignore_errors=True)
