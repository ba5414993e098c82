"""Tunnels: the public names, and the registry of transports.

``Tunnel`` is the SSH tunnel (through the OpenSSH client), as in chopsticks
1.0. Adding a transport means one module in :mod:`chopsticks.transports` and
one line here. ParamikoTunnel and Docker/DockerExec need the optional extras
``ssh`` (paramiko) and ``docker``; their modules import those packages only
when a tunnel is made, so importing this module never needs them.
"""
from __future__ import annotations

from ._base import BaseTunnel
from ._results import ErrorResult
from .errors import RemoteException
from .transports.docker import Docker, DockerExec
from .transports.local import Local, Sudo
from .transports.paramiko import ParamikoTunnel
from .transports.ssh import SSHTunnel

Tunnel = SSHTunnel

__all__ = ['BaseTunnel', 'Docker', 'DockerExec', 'ErrorResult', 'Local', 'ParamikoTunnel',
           'RemoteException', 'SSHTunnel', 'Sudo', 'Tunnel']
