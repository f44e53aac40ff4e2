"""Python client for Strata: `Client`, `Collection`, `Hit` and the `StrataError` family."""

from .client import Client, Collection, Hit, encode_vector
from .errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StrataError,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "Client",
    "Collection",
    "Hit",
    "encode_vector",
    "StrataError",
    "InvalidArgument",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "Unavailable",
]
__version__ = "0.1.0"
