"""``forgeline federated``: train one model across data silos (see :mod:`forgeline.federated`)."""

from __future__ import annotations

from typing import Annotated

import typer

from forgeline.cli.options import ConfigOption
from forgeline.cli.output import console, metrics_table, notify
from forgeline.config.load import load_project

federated_app = typer.Typer(
    help="Train across data silos with Flower, the rows staying in each silo.",
    no_args_is_help=True,
)


@federated_app.command()
def simulate(
    rounds: Annotated[
        int | None,
        typer.Option("--rounds", min=1, help="Training rounds (default: federated.rounds)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run every silo on this machine; register the federated model and report it against
    pooled and silo-alone training on the same test rows."""
    from forgeline.federated.registration import FEDERATION_DIR
    from forgeline.federated.report import summary_rows
    from forgeline.federated.simulation import simulate as run_simulation

    project = load_project(config)
    result = run_simulation(project, notify, rounds)
    console.print(
        metrics_table("Federated training", summary_rows(result.outcome, result.comparison))
    )
    console.print(result.comparison.table.round(4).to_string(na_rep="-"))
    version = result.version
    console.print(
        f"Registered {version.name} {version.version} at {version.path}; the federation's "
        f"report is {version.path / FEDERATION_DIR / 'report.html'}"
    )


@federated_app.command()
def server(
    port: Annotated[int, typer.Option("--port", help="Port the silos connect to.")] = 9092,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    config: ConfigOption = None,
) -> None:
    """Coordinate a federation: wait for the configured silos, train with them, register the
    federated model in this project's registry."""
    from forgeline.federated.deployment import run_coordinator

    project = load_project(config, check_files=False)
    version = run_coordinator(project, host, port, notify)
    console.print(f"Federation done: {version.name} {version.version} at {version.path}")


@federated_app.command()
def client(
    silo: Annotated[str, typer.Option("--silo", help="This silo's name in federated.silos.")],
    server_address: Annotated[
        str, typer.Option("--server", help="The coordinator, host:port.")
    ] = "127.0.0.1:9092",
    config: ConfigOption = None,
) -> None:
    """Take part in federations as one silo, reading only its own data file; runs until
    stopped (Ctrl+C)."""
    from forgeline.federated.deployment import run_silo

    project = load_project(config, check_files=False)
    raise typer.Exit(run_silo(project, silo, server_address, notify))
