"""Transports: how an agent is started and what pipes lead to it.

A transport is a :class:`~chopsticks._base.BaseTunnel` subclass that
implements two hooks, ``_start`` (start the agent, return its
:class:`~chopsticks.transports.base.AgentPipes`) and optionally ``_diagnose``
(turn a failed start into the right :class:`~chopsticks.errors.ConnectError`).
One module per backend; :mod:`chopsticks.tunnel` is the registry that
re-exports them.
"""
