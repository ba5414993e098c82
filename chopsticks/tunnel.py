"""Tunnels: the public names, and the registry of transports.

``Tunnel`` is the SSH tunnel (through the OpenSSH client), as in chopsticks
1.0. Adding a transport means one module in :mod:`chopsticks.transports` and
one line here.
"""
from __future__ import annotations

from ._base import BaseTunnel
from ._results import ErrorResult
from .errors import RemoteException
from .transports.local import Local, Sudo
from .transports.ssh import SSHTunnel

Tunnel = SSHTunnel

__all__ = ['BaseTunnel', 'ErrorResult', 'Local', 'RemoteException', 'SSHTunnel', 'Sudo',
           'Tunnel']
