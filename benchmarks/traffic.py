"""What a store costs on the wire: a PyMongo ``CommandListener`` counting commands and BSON bytes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import bson
from pymongo import monitoring

QUIET = {"hello", "isMaster", "ismaster", "ping", "endSessions"}
"""Connection chatter left out of the counts: the handshake, pings and session cleanup."""


@dataclass
class Traffic(monitoring.CommandListener):
    """Commands and BSON bytes each way while ``on``; the handshake and pings are left out."""

    on: bool = False
    commands: int = 0
    sent: int = 0
    received: int = 0
    names: list[str] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on and event.command_name not in QUIET:
            self.commands += 1
            self.sent += len(bson.encode(event.command))
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if self.on and event.command_name not in QUIET:
            self.received += len(bson.encode(event.reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reset(self) -> None:
        self.commands = self.sent = self.received = 0
        self.names = []

    def snapshot(self) -> list[str]:
        return list(self.names)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.on = True
        try:
            yield
        finally:
            self.on = False
