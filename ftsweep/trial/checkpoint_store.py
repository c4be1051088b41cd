"""A trial's checkpoints kept beyond its node: copied to and from an object store (`storage`,
e.g. `s3://...`) through pyarrow's file systems. `ftsweep.trial.checkpoints` decides where
checkpoints go and which one a trial resumes from; `ftsweep.trial.manifest` publishes each one
it signs."""

from __future__ import annotations

from pathlib import Path


def _store(uri: str):
    """The pyarrow file system of `uri` and the path in it (S3's credentials and endpoint come
    from the environment, as for Ray's own storage: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def publish_checkpoint(folder: Path, uri: str) -> None:
    """Copy this node's files of a saved checkpoint (`checkpoint-N`) to `uri`/checkpoint-N."""
    from pyarrow import fs

    store, root = _store(uri)
    target = f"{root}/{folder.name}"
    store.create_dir(target, recursive=True)  # a no-op on S3; a file:// store needs it
    fs.copy_files(
        str(folder),
        target,
        source_filesystem=fs.LocalFileSystem(),
        destination_filesystem=store,
    )


def prune_checkpoints(uri: str, keep: str) -> None:
    """Remove the kept checkpoints other than `keep` (the one just published)."""
    from pyarrow import fs

    store, root = _store(uri)
    for info in store.get_file_info(fs.FileSelector(root, allow_not_found=True)):
        if info.type == fs.FileType.Directory and info.base_name != keep:
            store.delete_dir(info.path)


def fetch_checkpoints(folder: Path, uri: str) -> None:
    """Copy every kept checkpoint down into `folder`: all ranks' files, whichever node wrote
    them. Which one is loaded is still `last_checkpoint`'s choice (its manifest is checked)."""
    from pyarrow import fs

    store, root = _store(uri)
    for info in store.get_file_info(fs.FileSelector(root, allow_not_found=True)):
        if info.type == fs.FileType.Directory:
            (folder / info.base_name).mkdir(exist_ok=True)
            fs.copy_files(
                info.path,
                str(folder / info.base_name),
                source_filesystem=store,
                destination_filesystem=fs.LocalFileSystem(),
            )


def delete_checkpoints(uri: str) -> None:
    """Remove every kept checkpoint of a trial (none there is not an error)."""
    store, root = _store(uri)
    try:
        store.delete_dir(root)
    except FileNotFoundError:
        pass
