"""Agents on this machine: a plain subprocess (Local) or one through sudo (Sudo)."""
from __future__ import annotations

from ..errors import ConnectError, InterpreterNotFound, SudoPasswordRequired
from .._base import BaseTunnel
from ._process import spawn
from .base import AgentPipes


class Local(BaseTunnel):
    """An agent in a local subprocess: no network, same machine.

    ``name`` is only the tunnel's host name (results are keyed by it).
    """

    def __init__(self, name: str = 'localhost', *, python: str | None = None,
                 connect_timeout: float | None = None) -> None:
        super().__init__(name, python=python, connect_timeout=connect_timeout)

    def _start(self) -> AgentPipes:
        return spawn(self.host, self._agent_argv())


class Sudo(BaseTunnel):
    """An agent running as ``user`` through ``sudo -n`` (never prompts).

    Where sudo would need a password, connecting raises
    :class:`~chopsticks.errors.SudoPasswordRequired`.
    """

    def __init__(self, user: str = 'root', name: str | None = None, *,
                 python: str | None = None, connect_timeout: float | None = None) -> None:
        if not isinstance(user, str) or not user or user.startswith('-'):
            raise ValueError(f'invalid user name {user!r}')
        self.user = user
        super().__init__(name or f'{user}@localhost', python=python,
                         connect_timeout=connect_timeout)

    def _start(self) -> AgentPipes:
        argv = ['sudo', '-n', '-H', '-u', self.user, '--', *self._agent_argv()]
        try:
            return spawn(self.host, argv)
        except InterpreterNotFound as exc:
            raise ConnectError('sudo is not installed here', self.host) from exc

    def _diagnose(self, stderr: str, status: int | None) -> ConnectError:
        if 'password is required' in stderr or 'a terminal is required' in stderr:
            return SudoPasswordRequired(
                f'sudo -n cannot run as {self.user!r} without a password', self.host)
        if 'command not found' in stderr or 'No such file' in stderr:
            return InterpreterNotFound(f'{self.interpreter}: not found', self.host)
        if 'unknown user' in stderr:
            return ConnectError(f'sudo: unknown user {self.user!r}', self.host)
        return super()._diagnose(stderr, status)
