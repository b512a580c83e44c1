"""Output folders written whole or not at all, and never over a folder llmco2 did not write.

Every command that writes a folder (``export``, ``evaluate``'s report, a campaign's report) goes
through :func:`atomic_directory`: the files are written into a hidden staging sibling, which then
replaces the target with renames, so a crash leaves either the old folder or the new one, never a
mixture. A folder llmco2 wrote carries :data:`MARKER`; a non-empty folder without it holds
someone's files and is refused, ``--overwrite`` or not.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmco2.errors import ExportError

#: The file that marks a folder as written by llmco2 (and so replaceable by it).
MARKER = ".llmco2-output"


def check_output_folder(target: Path, *, overwrite: bool, what: str) -> Path:
    """Refuse a target :func:`atomic_directory` would refuse, before any work is done.

    Args:
        target: The folder to write.
        overwrite: Whether an existing folder written by llmco2 may be replaced.
        what: What the folder holds, for messages ("export folder", "report folder").

    Returns:
        The target as an absolute path.

    Raises:
        ExportError: The target is a file, a non-empty folder llmco2 did not write, an llmco2
            folder without ``overwrite``, or its parent is missing or not writable.
    """
    target = target.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ExportError(f"{what} {str(target)!r} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not (target / MARKER).is_file():
            raise ExportError(
                f"{what} {str(target)!r} holds files llmco2 did not write; "
                "choose an empty or new folder"
            )
        if not overwrite:
            raise ExportError(f"{what} {str(target)!r} exists and is not empty (use --overwrite)")
    parent = target.parent
    if not parent.is_dir():
        raise ExportError(f"parent folder of {what} {str(target)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {what} {str(target)!r}: its parent is not writable")
    return target


@contextmanager
def atomic_directory(target: Path, *, overwrite: bool, what: str) -> Iterator[Path]:
    """A staging folder that replaces ``target`` when the block ends without an error.

    Args:
        target: The folder to write.
        overwrite: Whether an existing folder written by llmco2 may be replaced.
        what: What the folder holds, for messages.

    Yields:
        The empty staging folder to write into (beside ``target``, on the same file system).

    Raises:
        ExportError: As :func:`check_output_folder`, or the folder cannot be written.
    """
    target = check_output_folder(target, overwrite=overwrite, what=what)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
    except OSError as exc:
        raise ExportError(f"cannot write {what} {str(target)!r}: {exc.strerror}") from exc
    try:
        yield staging
        (staging / MARKER).write_text(f"written by llmco2 ({what})\n", "utf-8")
        if target.exists():
            # Checked again: the folder may have changed while the block ran.
            check_output_folder(target, overwrite=overwrite, what=what)
            backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(backup)
            staging.rename(target)
            shutil.rmtree(backup)
        else:
            staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"cannot write {what} {str(target)!r}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
