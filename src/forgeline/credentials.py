"""Keeping credentials out of text that is logged, stored or shown.

Database and Redis URLs carry passwords in two places: the user-info part
(``postgresql://user:secret@host/db``) and query parameters (``redis://host?password=secret``).
Both are masked wherever a URL, or a library's error message that may quote one, is logged.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from forgeline.errors import ForgelineError

MASK = "***"
_SECRET_NAMES = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "api_key", "apikey", "access_token"}
)
_USERINFO_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")
_SECRET_PARAMETER = re.compile(
    r"(?P<name>\b(?:" + "|".join(sorted(_SECRET_NAMES)) + r"))['\"]?\s*[=:]\s*"
    r"(?:'[^']*'|\"[^\"]*\"|[^&\s'\",;)]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with its password (in the user-info part or a query parameter) masked."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        secret_query = any(name.lower() in _SECRET_NAMES for name, _ in pairs)
        if parts.password is None and not secret_query:
            return url  # untouched: rebuilding would drop the '//' of 'sqlite:///file.db'
        netloc = parts.netloc
        if parts.password is not None:
            host = netloc.rsplit("@", 1)[1]
            netloc = f"{parts.username or ''}:{MASK}@{host}"
        query = urlencode(
            [(name, MASK if name.lower() in _SECRET_NAMES else value) for name, value in pairs],
            safe="*",
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not parseable as a URL: mask whatever looks like a credential
        return hide_credentials(url)


def hide_credentials(text: str) -> str:
    """``text`` with every URL password and ``password=...``-style parameter masked."""
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _SECRET_PARAMETER.sub(lambda m: f"{m['name']}={MASK}", text)


class HideCredentials(logging.Filter):
    """A handler filter that masks credentials in every record it passes, whatever logged it
    (a driver's connection error quotes the URL it could not reach)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = hide_credentials(record.msg)
        if isinstance(record.args, tuple):
            # Argument by argument: formatters such as uvicorn's access log read them apart.
            record.args = tuple(_masked(arg) for arg in record.args)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later from the exception; mask its text as well.
            record.exc_text = hide_credentials(logging.Formatter().formatException(record.exc_info))
        return True


def _masked(value: object) -> object:
    if isinstance(value, str | BaseException):
        text = str(value)
        hidden = hide_credentials(text)
        if hidden != text:
            return hidden
    return value


class SecretFileError(ForgelineError):
    """A key file that is missing, unreadable, or readable by other users."""


def read_secret_file(path: Path, what: str) -> str:
    """The text of ``path``, which holds ``what`` (a key), stripped. Refused when users other
    than its owner may read it, as ssh refuses such a private key: a key that anyone on the
    machine can read protects nothing."""
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretFileError(
                f"{what} file '{path}' may be read by other users (mode "
                f"{stat.S_IMODE(mode):o}); make it the owner's only: chmod 600 {path}"
            )
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretFileError(f"{what} file '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"{what} file '{path}' cannot be read: {exc}") from None
