"""Result values: how a failure is represented when it is data, not an exception."""
from __future__ import annotations

from typing import Any

from .errors import ChopsticksError, ProtocolError, RemoteException, RemoteFileError, \
    UnsupportedResult


class ErrorResult:
    """A host's failure inside a :class:`~chopsticks.group.GroupResult`.

    ``msg`` is ``'TypeName: message'`` (the host is the result's key), ``tb`` the remote traceback (empty when the
    failure was not raised remotely), ``exception`` the exception a single
    tunnel would have raised, ``type_name`` its (remote) type name.
    """

    __slots__ = ('msg', 'tb', 'exception', 'type_name', 'host')

    def __init__(self, msg: str, tb: str = '', exception: BaseException | None = None,
                 type_name: str | None = None, host: str | None = None) -> None:
        self.msg = msg
        self.tb = tb
        self.exception = exception
        self.type_name = type_name or (type(exception).__name__ if exception else 'Error')
        self.host = host

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorResult:
        if isinstance(exc, RemoteException):
            return cls(f'{exc.type_name}: {exc.msg}', exc.remote_traceback, exc,
                       exc.type_name, exc.host)
        host = getattr(exc, 'host', None)
        msg = exc.msg if isinstance(exc, ChopsticksError) else str(exc)
        return cls(f'{type(exc).__name__}: {msg}', '', exc, type(exc).__name__, host)

    def raise_(self) -> None:
        """Raise the exception this result stands for."""
        raise self.exception or ChopsticksError(self.msg, self.host)

    def __repr__(self) -> str:
        return f'ErrorResult({self.msg!r})'

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ErrorResult)
                and (self.msg, self.tb) == (other.msg, other.tb))

    __hash__ = None  # type: ignore[assignment]


def remote_error(host: str, info: Any) -> ChopsticksError:
    """The exception for an ERROR frame's decoded body."""
    if not isinstance(info, dict):
        return ProtocolError(f"malformed error report: {info!r:.80}", host)
    kind = info.get('kind')
    type_name = str(info.get('type', 'Exception'))
    msg = str(info.get('msg', ''))
    if kind == 'encode':
        return UnsupportedResult(f'the result cannot be sent back: {msg}', host)
    if kind == 'file':
        return RemoteFileError(f'{type_name}: {msg}', host)
    return RemoteException(msg, host, type_name, str(info.get('tb', '')))
