"""Every exception chopsticks raises, under one root.

::

    ChopsticksError
     +-- ConnectError                 could not reach or boot the host
     |    +-- ConnectTimeout          (also TimeoutError) no handshake in time
     |    +-- ConnectionRefused       nothing listens there
     |    +-- NameResolutionError     the host name does not resolve
     |    +-- AuthenticationError     the server refused our credentials
     |    +-- HostKeyError            unknown or changed host key
     |    +-- InterpreterNotFound     the remote python does not exist
     |    +-- SudoPasswordRequired    sudo -n would have asked for a password
     |    +-- DockerError             engine unreachable, image missing, exited
     |    +-- FileDescriptorsExhausted  the controller is out of fds
     +-- RemoteException              your function raised on the remote
     |    +-- GroupError              raised by GroupResult.raise_failures()
     +-- SerializationError           (also TypeError) the call cannot be sent
     +-- UnsupportedResult            (also TypeError) the result cannot travel back
     +-- CallTimeout                  (also TimeoutError) the call overran its timeout
     +-- ConnectionLost               the agent went away mid-request
     +-- ProtocolError                garbage, oversize or unexpected frames
     +-- RemoteFileError              (also OSError) put/fetch failed on the remote

Each carries ``host`` (``None`` where no host is involved).
"""
from __future__ import annotations

from typing import Mapping


class ChopsticksError(Exception):
    """The root of every chopsticks exception."""

    host: str | None = None

    def __init__(self, msg: str = '', host: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if host is not None:
            self.host = host

    def __str__(self) -> str:
        if self.host is not None:
            return f'{self.host}: {self.msg}'
        return self.msg


class ConnectError(ChopsticksError):
    """The host could not be reached, or the agent did not start there."""


class ConnectTimeout(ConnectError, TimeoutError):
    """No handshake within ``connect_timeout``."""


class ConnectionRefused(ConnectError):
    """The host refused the connection."""


class NameResolutionError(ConnectError):
    """The host name could not be resolved to an address."""


class AuthenticationError(ConnectError):
    """The server did not accept our credentials."""


class HostKeyError(ConnectError):
    """The host's key is unknown or does not match known_hosts."""


class InterpreterNotFound(ConnectError):
    """The remote Python interpreter does not exist."""


class SudoPasswordRequired(ConnectError):
    """``sudo -n`` refused because a password would be needed."""


class DockerError(ConnectError):
    """The Docker engine, image or container failed us."""


class FileDescriptorsExhausted(ConnectError):
    """The controller ran out of file descriptors opening this tunnel."""


class RemoteException(ChopsticksError):
    """The function raised on the remote host.

    ``type_name`` is the remote exception's class name, ``msg`` its message,
    ``remote_traceback`` (alias ``tb``) the remote traceback text.
    """

    def __init__(self, msg: str, host: str | None = None, type_name: str = '',
                 remote_traceback: str = '') -> None:
        super().__init__(msg, host)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    @property
    def tb(self) -> str:
        return self.remote_traceback

    def __str__(self) -> str:
        text = f'{self.type_name}: {self.msg}' if self.type_name else self.msg
        return f'{self.host}: {text}' if self.host is not None else text


class SerializationError(ChopsticksError, TypeError):
    """A call, its arguments or a function it needs cannot be sent to an agent."""


class UnsupportedResult(ChopsticksError, TypeError):
    """The function's result has a type the safe codec does not carry."""


class CallTimeout(ChopsticksError, TimeoutError):
    """The call did not finish within its timeout; the agent was stopped."""


class ConnectionLost(ChopsticksError):
    """The agent's pipe closed before the request finished."""


class ProtocolError(ChopsticksError):
    """The agent sent something the protocol does not allow."""


class RemoteFileError(ChopsticksError, OSError):
    """put or fetch failed on the remote side (or the checksum did not match)."""


class GroupError(RemoteException):
    """Some hosts of a group call failed; ``failures`` maps host to ErrorResult.

    A RemoteException subclass because chopsticks 1.0's ``raise_failures``
    raised RemoteException, and code catching that keeps working.
    """

    def __init__(self, msg: str, failures: Mapping[str, object]) -> None:
        super().__init__(msg, None, 'GroupError')
        self.failures = failures

    def __str__(self) -> str:
        return self.msg
