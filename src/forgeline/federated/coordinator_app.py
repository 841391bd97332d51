"""The ServerApp of a deployed federation, as Flower's runtime loads it by name
(``forgeline.federated.coordinator_app:server_app``): it runs beside the coordinator's
SuperLink, reads the project from its run config (``project``: the path of forgeline.yaml
there) and registers the federated model in that project's registry. The silos' side is
:mod:`~forgeline.federated.silo_app`.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from forgeline.config import load_project
from forgeline.data import fingerprint_files
from forgeline.federated.grid import MeteredGrid
from forgeline.federated.registration import plan_for, register
from forgeline.federated.server import run_federation
from forgeline.federated.silos import federation_config


def _say(message: str) -> None:
    """A line for the coordinator's terminal: Flower streams the ServerApp's output there."""
    print(message, flush=True)


server_app = ServerApp()


@server_app.main()
def _coordinate(grid: Grid, context: Context) -> None:
    project = load_project(Path(str(context.run_config["project"])), check_files=False)
    config, federated = federation_config(project)
    outcome = run_federation(MeteredGrid(grid), plan_for(project, federated), _say)
    # The coordinator holds no rows: the data's fingerprint is the settings that shaped it.
    fingerprint = fingerprint_files({}, config.data.model_dump_json() + federated.model_dump_json())
    version = register(project, federated, outcome, None, fingerprint)
    _say(f"Registered {version.name} {version.version} at {version.path}")
