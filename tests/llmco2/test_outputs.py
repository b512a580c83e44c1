from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmco2.errors import ExportError
from llmco2.outputs import MARKER, atomic_directory, check_output_folder


def _write(target: Path, text: str, *, overwrite: bool = False) -> None:
    with atomic_directory(target, overwrite=overwrite, what="test folder") as staging:
        (staging / "data.txt").write_text(text)


def test_a_new_folder_appears_whole_with_its_marker(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _write(target, "one")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "data.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_empty_folder_is_used(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    _write(target, "one")
    assert (target / "data.txt").read_text() == "one"


def test_its_own_folder_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _write(target, "one")
    with pytest.raises(ExportError, match="not empty \\(use --overwrite\\)"):
        _write(target, "two")
    assert (target / "data.txt").read_text() == "one"
    _write(target, "two", overwrite=True)
    assert (target / "data.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or backup left


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_llmco2_did_not_write_is_never_touched(tmp_path: Path, overwrite: bool) -> None:
    target = tmp_path / "mine"
    (target / "dataset").mkdir(parents=True)
    (target / "dataset" / "notes.txt").write_text("keep")
    with pytest.raises(ExportError, match="holds files llmco2 did not write"):
        _write(target, "x", overwrite=overwrite)
    assert (target / "dataset" / "notes.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_a_failure_inside_the_block_leaves_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _write(target, "one")
    with (
        pytest.raises(RuntimeError, match="disk full"),
        atomic_directory(target, overwrite=True, what="test folder") as staging,
    ):
        (staging / "data.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "data.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_targets_that_cannot_be_written_are_refused_up_front(tmp_path: Path) -> None:
    file = tmp_path / "report.txt"
    file.write_text("x")
    with pytest.raises(ExportError, match="is not a folder"):
        check_output_folder(file, overwrite=True, what="report folder")
    with pytest.raises(ExportError, match=r"parent folder .* does not exist"):
        check_output_folder(tmp_path / "no" / "out", overwrite=False, what="report folder")


def _read_only_folder_for_root() -> Path | None:
    """A folder root cannot write: a read-only mount (root's permission bits are no bar)."""
    mounts = Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").exists() else []
    candidates = [Path(line.split()[1]) for line in mounts if "ro" in line.split()[3].split(",")]
    candidates.append(Path("/proc/sys"))
    for folder in candidates:
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None


def test_a_read_only_parent_is_refused_up_front(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        parent = _read_only_folder_for_root()
        if parent is None:
            pytest.skip("running as root, and no read-only mount to write into here")
    else:
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o500)
    try:
        with pytest.raises(ExportError, match="parent is not writable"):
            check_output_folder(parent / "llmco2-out", overwrite=False, what="report folder")
        assert not (parent / "llmco2-out").exists()
    finally:
        if os.geteuid() != 0:
            parent.chmod(0o700)
