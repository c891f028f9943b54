"""daybook-client: a typed Python client for daybook.

    from daybook_client import Client

    with Client("127.0.0.1:50051") as daybook:
        outcome = daybook.ingest_message("acme", "m-1", "2025-06-20T10:00:00Z", "c-1")
        print(outcome.disposition, daybook.usage("acme").credits)

The generated stubs are importable too, as `daybook.v1` (built from daybook's proto).
"""

from .client import (
    AlreadyExists,
    Client,
    DaybookError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    error_from_refusal,
    error_from_rpc,
    message,
)

__all__ = [
    "AlreadyExists",
    "Client",
    "DaybookError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "error_from_refusal",
    "error_from_rpc",
    "message",
]
