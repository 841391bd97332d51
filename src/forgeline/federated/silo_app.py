"""The ClientApp of a deployed federation, as Flower's runtime loads it by name
(``forgeline.federated.silo_app:client_app``): it runs beside a silo's SuperNode and reads only
that silo's file, named by the node config (``project`` and ``silo``).

A module of its own, apart from the coordinator's :mod:`~forgeline.federated.coordinator_app`:
Flower starts a ClientApp process for every message, so what it imports is paid each time.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context

from forgeline.config import load_project
from forgeline.config.schema import TabularDataConfig
from forgeline.federated.client import make_client_app
from forgeline.federated.silos import SiloData, federation_config, read_silo


def _silo_for_node(context: Context) -> tuple[SiloData, TabularDataConfig]:
    project = load_project(Path(str(context.node_config["project"])), check_files=False)
    config, _ = federation_config(project)
    return read_silo(project, str(context.node_config["silo"])), config.data


client_app = make_client_app(_silo_for_node)
