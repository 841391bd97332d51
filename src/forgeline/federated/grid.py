"""Grids: how the server's messages reach the silos' ClientApps.

:class:`InProcessGrid` runs every silo's ClientApp in this process, one after another. Flower's
own simulation runtime needs Ray, which starts a cluster of worker processes: on a 2-core
machine that costs more than the federation it runs (see ``benchmarks/federated_bench.py``).
The messages, records and strategies are Flower's, so the same ServerApp logic runs over a
deployed SuperLink's grid unchanged.

:class:`MeteredGrid` wraps any grid to count the bytes each exchange moves and to leave out
silos the server refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run

SERVER_NODE = 1
"""The node id the server's messages come from (Flower's SuperLink uses 1 too)."""
CLIENT_ERROR = 2
"""The error code of a reply from a ClientApp that raised (Flower's ``ErrorCode.CLIENT_APP_RAISED_EXCEPTION``)."""


class InProcessGrid(Grid):
    """Delivers each message to the ClientApp of its node, in this process."""

    def __init__(self, client_app: ClientApp, node_configs: dict[int, dict[str, str]]) -> None:
        self._client_app = client_app
        self._contexts = {
            node: Context(
                run_id=1, node_id=node, node_config=dict(config), state=RecordDict(), run_config={}
            )
            for node, config in node_configs.items()
        }
        self._replies: dict[str, Message] = {}
        self._run = Run.create_empty(run_id=1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            # What a SuperLink does on receipt: give the message its id and sender.
            message_id = uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id
            message.metadata.__dict__["_src_node_id"] = SERVER_NODE
            message.metadata.__dict__["_run_id"] = self._run.run_id
            context = self._contexts.get(message.metadata.dst_node_id)
            if context is None:
                continue
            try:
                reply = self._client_app(message, context)
            except Exception as exc:  # a silo's failure is its reply, as over the network
                reason = f"{type(exc).__name__}: {exc}"
                reply = Message(Error(CLIENT_ERROR, reason), reply_to=message)
            reply.metadata.__dict__["_message_id"] = uuid4().hex
            self._replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


@dataclass
class Exchange:
    """One send-and-receive of the server: what it was for and what it moved."""

    message_type: str
    sent_bytes: int
    received_bytes: int
    replies: int
    failures: int
    seconds: float


def content_bytes(message: Message) -> int:
    """The bytes of a message's arrays (what dominates its size on the wire)."""
    if message.has_error():
        return 0
    return sum(record.count_bytes() for record in message.content.array_records.values())


class MeteredGrid(Grid):
    """Another grid, counting bytes per exchange and leaving out refused nodes."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.refused: set[int] = set()
        self.dropped: dict[int, str] = {}
        """Nodes left out after they failed a set-up step, and why."""
        self.admitted: set[int] | None = None
        """Once set, the only nodes messages go to (others connected later were never checked)."""
        self.exchanges: list[Exchange] = []

    def admit(self, nodes: set[int]) -> None:
        self.admitted = set(nodes)

    def drop(self, node: int, reason: str) -> None:
        self.refused.add(node)
        self.dropped.setdefault(node, reason)

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return [
            node
            for node in self._grid.get_node_ids()
            if node not in self.refused and (self.admitted is None or node in self.admitted)
        ]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        allowed = set(self.get_node_ids())
        outgoing = [m for m in messages if m.metadata.dst_node_id in allowed]
        started = time.perf_counter()
        replies = list(self._grid.send_and_receive(outgoing, timeout=timeout))
        if outgoing:
            self.exchanges.append(
                Exchange(
                    message_type=outgoing[0].metadata.message_type,
                    sent_bytes=sum(content_bytes(m) for m in outgoing),
                    received_bytes=sum(content_bytes(m) for m in replies),
                    replies=sum(not m.has_error() for m in replies),
                    failures=len(outgoing) - sum(not m.has_error() for m in replies),
                    seconds=time.perf_counter() - started,
                )
            )
        return replies
