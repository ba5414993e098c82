"""The contract between a tunnel and its transport."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol


class AgentProcess(Protocol):
    """Whatever runs the agent: a local process, a container, a channel."""

    def stop(self, grace: float) -> int | None:
        """Wait up to ``grace`` seconds for the agent to exit, then kill it.

        Cooperative (blocks only the calling greenlet); returns the exit
        status where one is known. Never raises.
        """

    def kill(self) -> None:
        """Kill the agent now without waiting; never blocks, never raises."""


@dataclass
class AgentPipes:
    """What a started transport hands to the multiplexer.

    ``sock`` carries the agent's stdin and stdout (one socket: one fd per
    tunnel instead of two); ``stderr_fd`` is read and shown prefixed with the
    host name.
    """

    sock: socket.socket
    stderr_fd: int | None
    process: AgentProcess
