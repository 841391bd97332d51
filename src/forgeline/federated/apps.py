"""The Flower apps of a deployed federation, as Flower's runtime loads them by name
(``forgeline.federated.apps:server_app`` and ``:client_app``).

The ServerApp runs in the coordinator's SuperLink and reads the project from its run config
(``project``: the path of forgeline.yaml there); it registers the federated model in that
project's registry. Each ClientApp runs beside a silo's SuperNode and reads only that silo's
file, named by the node config (``project`` and ``silo``).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from forgeline.config import load_project
from forgeline.config.schema import TabularDataConfig
from forgeline.data import fingerprint_files
from forgeline.federated.client import make_client_app
from forgeline.federated.grid import MeteredGrid
from forgeline.federated.registration import plan_for, register
from forgeline.federated.server import run_federation
from forgeline.federated.silos import SiloData, federation_config, read_silo


def _say(message: str) -> None:
    """A line for the coordinator's terminal: Flower streams the ServerApp's output there."""
    print(message, flush=True)


def _silo_for_node(context: Context) -> tuple[SiloData, TabularDataConfig]:
    project = load_project(Path(str(context.node_config["project"])), check_files=False)
    config, _ = federation_config(project)
    return read_silo(project, str(context.node_config["silo"])), config.data


client_app = make_client_app(_silo_for_node)
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
