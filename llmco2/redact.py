"""Secrets kept out of what llmco2 records: command lines, URLs and messages in reports."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

#: ``scheme://user:password@`` in any text (database and Ray URLs); the password becomes ``***``.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<secret>[^\s@/]+)@")
#: ``--password X`` / ``--token=X`` style options.
_SECRET_OPTION = re.compile(r"^--?[A-Za-z0-9\-_]*(password|passwd|secret|token)[A-Za-z0-9\-_]*$")

MASK = "***"


def redact(text: str) -> str:
    """``text`` with the password of every URL in it masked."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)


def redact_arguments(arguments: Sequence[str]) -> list[str]:
    """Command-line arguments with URL passwords and the values of secret options masked."""
    masked: list[str] = []
    hide_next = False
    for argument in arguments:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        name, equals, _value = argument.partition("=")
        if _SECRET_OPTION.match(name):
            if equals:
                masked.append(f"{name}={MASK}")
            else:
                masked.append(argument)
                hide_next = True
            continue
        masked.append(redact(argument))
    return masked


def command_line(program: str, arguments: Sequence[str]) -> str:
    """The shell command that ran, secrets masked, for reports to record."""
    return " ".join([program, *(shlex.quote(a) for a in redact_arguments(arguments))])
