"""Errors: every failed request raises a `StrataError` subclass chosen by status."""

from __future__ import annotations


class StrataError(Exception):
    """A request the server refused or could not answer.

    `status` is the HTTP status (0 when the server could not be reached), `code` the
    error code of the server's JSON body (`invalid_argument`, `not_found`, ...), and
    `message` its message.
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status, self.code, self.message = status, code, message


class InvalidArgument(StrataError):
    """400: the request is wrong; the message says which part and why."""


class Unauthenticated(StrataError):
    """401: no API key, or an unknown one."""


class PermissionDenied(StrataError):
    """403: the API key's role or collections do not reach this operation."""


class NotFound(StrataError):
    """404: no such collection (or route)."""


class Conflict(StrataError):
    """409: the collection exists already, or the node cannot do this now."""


class Unavailable(StrataError):
    """429 or 5xx after the retries ran out, or the server could not be reached."""


_BY_STATUS = {400: InvalidArgument, 401: Unauthenticated, 403: PermissionDenied, 404: NotFound, 409: Conflict}


def error_for(status: int, code: str, message: str) -> StrataError:
    cls = _BY_STATUS.get(status) or (Unavailable if status == 0 or status == 429 or status >= 500 else StrataError)
    return cls(status, code, message)
