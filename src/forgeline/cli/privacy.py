"""``forgeline redact`` and ``forgeline unredact``: personal data out of texts and files, and
back in for whoever holds the key.

Both work inside a project (its ``privacy:`` section, and its registry for ``ner_model``) and
outside one, with the defaults.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast, get_args

import typer
from rich.markup import escape

from forgeline.cli.options import ConfigOption
from forgeline.cli.output import console
from forgeline.config.load import PROJECT_FILE, load_project
from forgeline.config.privacy import OperatorName, PrivacyConfig
from forgeline.errors import DataError, InputError

if TYPE_CHECKING:
    from forgeline.privacy import Redaction

OPERATORS: tuple[str, ...] = get_args(OperatorName)

FileOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="A CSV, JSONL or Parquet file to rewrite.")
]
ColumnsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--columns", help="The file's text columns to rewrite (comma-separated or repeated)."
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="A file holding the privacy key (default: $FORGELINE_PRIVACY_KEY, then privacy.key_file).",
    ),
]
EncodingOption = Annotated[
    str, typer.Option("--encoding", help="Text encoding of a CSV or JSONL file.")
]
ChunkOption = Annotated[
    int, typer.Option("--chunk-rows", min=1, help="Rows read, rewritten and written at a time.")
]


@dataclass(frozen=True)
class _Setup:
    config: PrivacyConfig
    root: Path | None
    registry_dir: Path | None


def _setup(config: Path | None) -> _Setup:
    """The project's privacy settings; the defaults outside a project."""
    if config is None and not (Path.cwd() / PROJECT_FILE).is_file():
        return _Setup(PrivacyConfig(), None, None)
    project = load_project(config, check_files=False)
    return _Setup(project.config.privacy, project.root, project.registry_dir)


def _check_sources(
    texts: list[str] | None, file: Path | None, columns: list[str] | None, output: Path | None
) -> list[str]:
    """The columns named (split at commas), once it is clear what is to be read."""
    if bool(texts) == (file is not None):
        raise InputError("give texts as arguments or a file with --file (one of the two)")
    named = [name.strip() for item in columns or [] for name in item.split(",") if name.strip()]
    if file is not None and not named:
        raise InputError("--columns: name the file's columns to rewrite, e.g. --columns body")
    if file is None and (named or output is not None):
        raise InputError("--columns and --output go with --file; texts are printed")
    if file is not None and not file.is_file():
        raise DataError(f"--file: no such file '{file}'")
    return named


def _as_json(redaction: Redaction) -> str:
    """The redacted text and the entities found, at their offsets in the text given."""
    entities = [
        {"type": s.entity_type, "start": s.start, "end": s.end, "score": round(s.score, 4)}
        for s in redaction.spans
    ]
    return json.dumps({"text": redaction.text, "entities": entities}, ensure_ascii=False)


def _default_output(file: Path, label: str) -> Path:
    return file.with_name(f"{file.stem}.{label}{file.suffix}")


def redact(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to redact.")] = None,
    file: FileOption = None,
    columns: ColumnsOption = None,
    operator: Annotated[
        str | None,
        typer.Option(
            "--operator",
            help=f"One of: {', '.join(OPERATORS)} (default: privacy.operator, replace).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the file (default: NAME.redacted.EXT)."
        ),
    ] = None,
    key_file: KeyFileOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each text as JSON, with the entities found.")
    ] = False,
    encoding: EncodingOption = "utf-8",
    chunk_rows: ChunkOption = 1000,
    config: ConfigOption = None,
) -> None:
    """Find personal data (names, phones, cards, IDs, ...) and mask, replace, pseudonymize or
    encrypt it."""
    from forgeline.data.rewrite import rewrite_columns
    from forgeline.privacy import KEYED_OPERATORS, load_privacy_key

    named = _check_sources(texts, file, columns, output)
    if as_json and file is not None:
        raise InputError("--json prints texts given as arguments; a file's rows go to --output")
    if operator is not None and operator not in OPERATORS:
        raise InputError(
            f"--operator: unknown operator '{operator}'; choose from {', '.join(OPERATORS)}"
        )
    setup = _setup(config)
    chosen = cast(OperatorName, operator) if operator is not None else setup.config.operator
    key = (
        load_privacy_key(setup.config, chosen, key_file, setup.root)
        if chosen in KEYED_OPERATORS
        else None
    )
    from forgeline.privacy import PiiDetector, Redactor  # Presidio: after the cheap checks

    detector = PiiDetector.from_config(setup.config, setup.registry_dir)
    redactor = Redactor(detector, chosen, key, setup.config.mask)
    if file is None:
        for redaction in redactor.redact(texts or []):
            sys.stdout.write((_as_json(redaction) if as_json else redaction.text) + "\n")
        return
    found: Counter[str] = Counter()

    def redact_values(values: list[str]) -> list[str]:
        redactions = redactor.redact(values)
        found.update(span.entity_type for r in redactions for span in r.spans)
        return [r.text for r in redactions]

    target = output or _default_output(file, "redacted")
    rows = rewrite_columns(
        file,
        target,
        named,
        redact_values,
        chunk_rows=chunk_rows,
        encoding=encoding,
        description=f"redacting {file.name}",
    )
    summary = ", ".join(f"{entity} {count}" for entity, count in sorted(found.items())) or "none"
    console.print(
        escape(
            f"Redacted {rows} rows of {file} (column {', '.join(named)}) with {chosen}: "
            f"{found.total()} entities ({summary}); wrote {target}"
        ),
        soft_wrap=True,
    )


def unredact(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts with encrypted tokens.")] = None,
    file: FileOption = None,
    columns: ColumnsOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write the file (default: NAME.unredacted.EXT)."
        ),
    ] = None,
    key_file: KeyFileOption = None,
    encoding: EncodingOption = "utf-8",
    chunk_rows: ChunkOption = 1000,
    config: ConfigOption = None,
) -> None:
    """Decrypt the values `forgeline redact --operator encrypt` replaced (needs the key)."""
    from forgeline.data.rewrite import CellError, rewrite_columns
    from forgeline.privacy import TokenError, load_privacy_key
    from forgeline.privacy import unredact as restore

    named = _check_sources(texts, file, columns, output)
    setup = _setup(config)
    key = load_privacy_key(setup.config, "unredact", key_file, setup.root)
    if file is None:
        for number, text in enumerate(texts or [], start=1):
            try:
                sys.stdout.write(restore(text, key) + "\n")
            except TokenError as exc:
                raise InputError(f"text {number}: {exc}") from None
        return

    def restore_values(values: list[str]) -> list[str]:
        restored = []
        for index, value in enumerate(values):
            try:
                restored.append(restore(value, key))
            except TokenError as exc:
                raise CellError(index, str(exc)) from None
        return restored

    target = output or _default_output(file, "unredacted")
    rows = rewrite_columns(
        file,
        target,
        named,
        restore_values,
        chunk_rows=chunk_rows,
        encoding=encoding,
        description=f"unredacting {file.name}",
    )
    console.print(
        escape(f"Decrypted {rows} rows of {file} (column {', '.join(named)}); wrote {target}")
    )
