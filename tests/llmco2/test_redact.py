from __future__ import annotations

from llmco2.redact import command_line, redact, redact_arguments


def test_url_passwords_are_masked_wherever_they_appear() -> None:
    assert redact("postgresql+psycopg://user:SECRET@host:5432/db") == (
        "postgresql+psycopg://user:***@host:5432/db"
    )
    assert (
        redact("--db=postgresql://u:p%40ss@h/db and more")
        == "--db=postgresql://u:***@h/db and more"
    )
    # Without a password there is nothing to hide, and ports are not passwords.
    for text in ("sqlite:////tmp/x.db", "postgresql://user@host/db", "http://127.0.0.1:8265/api"):
        assert redact(text) == text


def test_secret_options_and_urls_in_a_command_line_are_masked() -> None:
    arguments = ["evaluate", "--db", "postgresql://me:hunter2@db/test", "--token", "abc",
                 "--api-password=xyz", "--out", "r"]  # fmt: skip
    masked = redact_arguments(arguments)
    assert masked == ["evaluate", "--db", "postgresql://me:***@db/test", "--token", "***",
                      "--api-password=***", "--out", "r"]  # fmt: skip
    line = command_line("llmco2", arguments)
    assert "hunter2" not in line and "abc" not in line and "xyz" not in line
    assert line.startswith("llmco2 evaluate --db ") and "postgresql://me:***@db/test" in line


def test_database_messages_mask_as_recorded_command_lines_do() -> None:
    from storage.database import mask_url

    for url in ("postgresql+psycopg://user:SECRET@host:5432/db", "postgresql://u:p%40ss@h/db"):
        assert mask_url(url) == redact(url) and "SECRET" not in mask_url(url)
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    # One SQLAlchemy cannot parse still shows what was given, its password masked.
    unparseable = "postgresql+psycopg://user:SECRET@host:5432/db with junk ::"
    assert "SECRET" not in mask_url(unparseable) and "host:5432" in mask_url(unparseable)
