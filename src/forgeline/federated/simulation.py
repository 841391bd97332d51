"""``forgeline federated simulate``: every silo on this machine, each behind its own ClientApp,
the server's ServerApp driving them over an in-process grid; then the federated model is
registered like any other version, beside a comparison with pooled and silo-alone training."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import Context, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.task_identity import TaskIdentity

from forgeline.config import Project
from forgeline.federated.client import make_client_app
from forgeline.federated.comparison import Comparison, compare
from forgeline.federated.grid import SERVER_NODE, InProcessGrid, MeteredGrid
from forgeline.federated.registration import plan_for, register
from forgeline.federated.server import FederationOutcome, TrainingPlan, run_federation
from forgeline.federated.silos import SiloData, federation_config, simulated_silos
from forgeline.registry.store import ModelVersion
from forgeline.tasks.base import Notify

FIRST_NODE = 2
"""Node ids of the silos start here (the server is node 1)."""


@dataclass(frozen=True)
class Simulation:
    version: ModelVersion
    outcome: FederationOutcome
    comparison: Comparison
    silos: list[SiloData]


def make_server_app(
    plan: TrainingPlan, notify: Notify, outcomes: list[FederationOutcome]
) -> ServerApp:
    """The ServerApp of a federation; its outcome is appended to ``outcomes``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        metered = grid if isinstance(grid, MeteredGrid) else MeteredGrid(grid)
        outcomes.append(run_federation(metered, plan, notify))

    return app


def simulate(project: Project, notify: Notify, rounds: int | None = None) -> Simulation:
    _, federated = federation_config(project)
    if rounds is not None:
        federated = federated.model_copy(update={"rounds": rounds})
    silos, fingerprint = simulated_silos(project)
    by_node = {FIRST_NODE + i: silo for i, silo in enumerate(silos)}
    config, _ = federation_config(project)
    client_app = make_client_app(lambda context: (by_node[context.node_id], config.data))
    grid = MeteredGrid(InProcessGrid(client_app, {n: {"silo": s.name} for n, s in by_node.items()}))
    outcomes: list[FederationOutcome] = []
    server_app = make_server_app(plan_for(project, federated), notify, outcomes)
    # What Flower's ServerApp runtime sets before it runs a ServerApp: who sends its messages.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SERVER_NODE
    server_app(
        grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    )
    outcome = outcomes[0]
    taking_part = [s for s in silos if s.name in outcome.silos]
    comparison = compare(config, outcome.schema, taking_part, outcome.estimator)
    version = register(project, federated, outcome, comparison, fingerprint)
    return Simulation(version, outcome, comparison, silos)
