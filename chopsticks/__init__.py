"""chopsticks: run pure-Python callables on many remote hosts at once.

Importing chopsticks never monkey-patches anything.
"""
from __future__ import annotations

from .errors import ChopsticksError, RemoteException
from .group import Group, GroupResult
from .queue import AsyncResult, Queue
from .tunnel import BaseTunnel, Docker, DockerExec, ErrorResult, Local, ParamikoTunnel, \
    SSHTunnel, Sudo, Tunnel

__version__ = '2.0.0.dev0'
__all__ = ['AsyncResult', 'BaseTunnel', 'ChopsticksError', 'Docker', 'DockerExec',
           'ErrorResult', 'Group', 'GroupResult', 'Local', 'ParamikoTunnel', 'Queue',
           'RemoteException', 'SSHTunnel', 'Sudo', 'Tunnel', '__version__']
