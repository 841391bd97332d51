"""``forgeline backup`` and ``forgeline restore`` (see :mod:`forgeline.backup`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from forgeline.cli.options import ConfigOption
from forgeline.cli.output import console
from forgeline.config.load import load_project

KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="A file holding the archive's key (default: $FORGELINE_BACKUP_KEY).",
    ),
]


def backup(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="The archive to write (default: forgeline-DATE-TIME.tar.zst)."
        ),
    ] = None,
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Encrypt the archive (AES-256-GCM); it is also encrypted whenever a key is given.",
        ),
    ] = False,
    key_file: KeyFileOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the database (a consistent copy, also while the server runs), the model registry
    and the config into one archive, with a SHA-256 manifest."""
    from forgeline.backup import backup_secret, create_backup

    secret = backup_secret(key_file, encrypt)
    project = load_project(config, check_files=False)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = output or Path(f"forgeline-{project.config.name}-{stamp}.tar.zst")
    summary = create_backup(project, target, secret)
    console.print(
        escape(
            f"Wrote {summary.path} ({summary.files} files, {summary.bytes / 1e6:.1f} MB, "
            f"{summary.database} database, {'encrypted' if summary.encrypted else 'not encrypted'}). "
            "The data keys (forgeline.keys) are not in it: keep them apart."
        ),
        soft_wrap=True,
    )


def restore(
    archive: Annotated[Path, typer.Argument(help="An archive written by `forgeline backup`.")],
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="The project to restore into (default: here); its forgeline.yaml says where "
            "the database and models go, and the archive's is written when it has none.",
        ),
    ] = Path(),
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a database that holds data and a registry that differs (both are "
            "set aside first, never deleted).",
        ),
    ] = False,
    key_file: KeyFileOption = None,
) -> None:
    """Check an archive whole (every file against its manifest; an encrypted one against its
    key) and only then restore its database, models and config."""
    from forgeline.backup import backup_secret, restore_backup

    summary = restore_backup(archive, directory, backup_secret(key_file, False), force)
    aside = "".join(f"; set aside: {path}" for path in summary.set_aside)
    console.print(
        escape(
            f"Restored {archive} into {summary.project}: {summary.database} database, "
            f"{summary.models} model versions{aside}"
        ),
        soft_wrap=True,
    )
