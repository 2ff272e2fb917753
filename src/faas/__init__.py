"""faas: run untrusted code in a fresh sandbox per invocation, behind an HTTP gateway.

The public names: the request/result types, the exception tree and the
executor contract. Everything else is internal and may change.
"""

from faas.errors import (
    AdmissionRejected,
    AgentProtocolError,
    BundleRejected,
    ExecutorUnavailable,
    FaasError,
    ImageNotFound,
    InvocationTimeout,
    PayloadTooLarge,
    RequestTimeout,
    SandboxError,
    ShuttingDown,
    UnknownExecutor,
    ValidationError,
)
from faas.executors.base import Availability, Executor
from faas.models import ExecutionSpec, InvocationResult, InvokeRequest, Limits

__version__ = "0.1.0"

__all__ = [
    "AdmissionRejected",
    "AgentProtocolError",
    "Availability",
    "BundleRejected",
    "ExecutionSpec",
    "Executor",
    "ExecutorUnavailable",
    "FaasError",
    "ImageNotFound",
    "InvocationResult",
    "InvocationTimeout",
    "InvokeRequest",
    "Limits",
    "PayloadTooLarge",
    "RequestTimeout",
    "SandboxError",
    "ShuttingDown",
    "UnknownExecutor",
    "ValidationError",
    "__version__",
]
