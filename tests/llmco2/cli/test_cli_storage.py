"""`llmco2 db` and `llmco2 export` as a user runs them, bad input included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from storage import CampaignStore
from storage.database import head_revision
from tests.llmco2.cli.test_cli import llmco2
from tests.storage.test_export import fill

ASSET = Path(__file__).parents[2] / "storage" / "assets" / "schema_v1.sqlite"


def one_line_error(result: subprocess.CompletedProcess[str], message: str, code: int = 2) -> None:
    assert result.returncode == code
    stderr = result.stderr.strip().splitlines()
    assert len(stderr) == 1, result.stderr
    assert stderr[0].startswith("llmco2: error: ") and message in stderr[0], stderr[0]


def test_db_upgrade_migrates_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(ASSET, path)
    url = f"sqlite:///{path}"
    result = llmco2(
        "export", "--db", url, "--campaign", "v1-campaign", "--out", str(tmp_path / "x")
    )
    one_line_error(result, "run `llmco2 db upgrade")
    result = llmco2("db", "upgrade", "--db", url)
    head = head_revision()
    assert result.returncode == 0 and f"upgraded from 0001 to {head}" in result.stdout
    assert f"already at revision {head}" in llmco2("db", "upgrade", "--db", url).stdout
    assert f"revision {head}" in llmco2("db", "current", "--db", url).stdout


def test_export_command(tmp_path: Path, postgres_url: str) -> None:
    fill(CampaignStore(postgres_url))
    out = tmp_path / "dataset"
    result = llmco2("export", "--db", postgres_url, "--campaign", "exp", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "exported 10 points and 3 failures" in result.stdout
    assert "4 simulated rows left out" in result.stdout
    assert (out / "manifest.json").exists()
    again = llmco2("export", "--db", postgres_url, "--campaign", "exp", "--out", str(out))
    one_line_error(again, "is not empty (use --overwrite)")
    wrong = llmco2(
        "export", "--db", postgres_url, "--campaign", "exq", "--out", str(tmp_path / "y")
    )
    one_line_error(wrong, "no campaign 'exq'")
    fmt = llmco2("export", "--db", postgres_url, "--campaign", "exp", "--out", str(tmp_path / "z"),
                 "--format", "xlsx")  # fmt: skip
    one_line_error(fmt, "unknown export format 'xlsx'")
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


@pytest.mark.parametrize(
    ("url", "message", "code"),
    [
        # a server that cannot be reached or refuses the role: the environment (exit 3)
        ("postgresql+psycopg://alice:s3cret@127.0.0.1:1/db", "alice:***@127.0.0.1:1", 3),
        ("postgresql+psycopg://no_such_role:pw@127.0.0.1:5432/test", "no_such_role", 3),
        ("sqlite:////nonexistent/folder/x.db", "does not exist", 2),
        ("mysql://root@127.0.0.1/test", "unsupported database 'mysql'", 2),
        ("not a url", "invalid database URL", 2),
    ],
)
def test_database_errors_are_one_line(tmp_path: Path, url: str, message: str, code: int) -> None:
    result = llmco2("export", "--db", url, "--campaign", "c", "--out", str(tmp_path / "x"))
    one_line_error(result, message, code)
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
    result = llmco2("db", "upgrade", "--db", url)
    one_line_error(result, message, code)


@pytest.mark.parametrize(
    "command",
    [["campaign", "list"], ["campaign", "status", "x"], ["export", "--campaign", "x", "--out"]],
)
def test_readers_of_a_missing_sqlite_file_do_not_create_it(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "typo.db"
    args = [*command, str(tmp_path / "out")] if command[-1] == "--out" else command
    result = llmco2(*args, "--db", f"sqlite:///{path}")
    one_line_error(result, f"database file {str(path)!r} does not exist")
    assert sorted(tmp_path.iterdir()) == []
