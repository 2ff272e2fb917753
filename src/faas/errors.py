"""The platform's exception tree, in one place.

    FaasError                      base of everything the platform raises on purpose
    +-- ValidationError            the request is malformed (HTTP 400)
    |   +-- PayloadTooLarge        body or payload over the configured limit (HTTP 413)
    |   +-- UnknownExecutor        the request names an executor this server lacks (HTTP 400)
    |   +-- BundleRejected         an uploaded code bundle is unsafe, malformed or over a
    |                              limit; names the problem and the entry (HTTP 400)
    |   +-- InvalidSpec            a function spec with problems; lists every one (HTTP 400)
    +-- Unauthenticated            no API key, or one that is unknown, revoked or expired
    |                              (HTTP 401)
    +-- Forbidden                  the key's role may not do this (HTTP 403)
    |   +-- QuotaExceeded          a tenant's deploy would pass its functions or bundle
    |                              bytes quota (HTTP 403: retrying does not help)
    +-- RequestTimeout             the client sent its request body too slowly (HTTP 408)
    +-- AdmissionRejected          concurrency, wait queue or body memory full (HTTP 429)
    +-- ShuttingDown               the server stopped accepting work (HTTP 503)
    |   +-- ExecutorClosed         an executor was asked to run after its aclose()
    +-- InvocationTimeout          the deadline passed; carries the partial result (HTTP 504)
    +-- ExecutorUnavailable        the tier cannot run on this host, with the reason (HTTP 503)
    +-- ImageNotFound              the requested image does not exist locally (HTTP 404)
    +-- NotFound                   no such function or version, or it was deleted (HTTP 404)
    +-- Conflict                   the request contradicts what is stored (HTTP 409)
    |   +-- InvocationCancelled    the call was cancelled (DELETE /invocations/{id}) while
    |                              its caller waited for it
    +-- StoreUnavailable           the database cannot be reached or used (HTTP 503)
    |   +-- SchemaTooNew           the database was made by a newer faas; refused on open
    +-- SandboxError               the sandbox or VM failed to start or broke (HTTP 500)
    +-- AgentProtocolError         a frame on the agent channel was truncated, oversize
    |                              or garbage (HTTP 502 when it surfaces to a client)
    +-- ClientError                raised only by the client side (``faas.client``, the CLI):
        |                          no usable answer came from the server
        +-- ServerUnreachable      nothing answered at the URL, or not in time
        +-- ApiError               the server answered an error status; carries that
                                   status, its ``error`` and ``problems``

Each backend translates the errors of the library it wraps into one of these
(``raise SandboxError(...) from exc``) so callers never see ``OSError``, an
httpx exception or a database driver's exception. Store errors never carry a
host path or a connection string with its password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faas.models import InvocationResult


class FaasError(Exception):
    """Base class; ``status`` is the HTTP status the gateway answers with."""

    status = 500


class ValidationError(FaasError):
    status = 400


class PayloadTooLarge(ValidationError):
    status = 413


class UnknownExecutor(ValidationError):
    status = 400


class BundleRejected(ValidationError):
    """The message names the problem and the (clipped, escaped) entry, never a host path."""

    status = 400


class InvalidSpec(ValidationError):
    """A function spec failed validation; ``problems`` names each field's problem."""

    status = 400

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"invalid function spec: {len(problems)} problem(s)")
        self.problems = problems


class Unauthenticated(FaasError):
    status = 401


class Forbidden(FaasError):
    status = 403


class QuotaExceeded(Forbidden):
    """A standing quota (functions, bundle bytes): only a delete or a raised quota helps."""


class RequestTimeout(FaasError):
    status = 408


class AdmissionRejected(FaasError):
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(FaasError):
    status = 503


class ExecutorClosed(ShuttingDown):
    """Every executor raises this from ``run()`` once ``aclose()`` was called."""

    def __init__(self, executor: str) -> None:
        super().__init__(f"the {executor} executor is closed")


class InvocationTimeout(FaasError):
    status = 504

    def __init__(self, message: str, result: InvocationResult) -> None:
        super().__init__(message)
        self.result = result


class ExecutorUnavailable(FaasError):
    status = 503


class ImageNotFound(FaasError):
    status = 404


class NotFound(FaasError):
    status = 404


class Conflict(FaasError):
    status = 409


class StoreUnavailable(FaasError):
    status = 503


class SchemaTooNew(StoreUnavailable):
    """The database's schema version is newer than this code's migrations know."""


class SandboxError(FaasError):
    status = 500


class AgentProtocolError(FaasError):
    status = 502


class ClientError(FaasError):
    """The client got no usable answer; ``status``: the server's, or 502 if there was none."""

    status = 502


class ServerUnreachable(ClientError):
    pass


class ApiError(ClientError):
    """The server refused or failed: its HTTP status, its ``error`` line, its ``problems``."""

    def __init__(self, error: str, status: int = 502, problems: tuple[str, ...] = ()) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.problems = problems


class InvocationCancelled(Conflict):
    """Raised to a synchronous caller whose call was cancelled by a DELETE."""

def platform_failure(request_id: str) -> str:
    """What a 500/502 (and a record of such a call) says: the request id only; the
    details are in the operator's log."""
    return (f"the platform failed to run this invocation (request id {request_id}); "
            "the operator's log has the details")
