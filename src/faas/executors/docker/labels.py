"""The labels every container of the docker tier carries, and what they are for.

``faas.managed=1`` marks a container as the platform's; ``faas.owner`` names the
executor object that made it (``aclose()`` and ``sweep()`` remove what their
owner still has); ``faas.instance`` names the server process
(``faas.instance.instance_id()``), so a later server removes what a dead one
left; ``faas.request_id`` and ``faas.function_id`` say what the container ran.
"""

from __future__ import annotations

from faas import instance
from faas.models import ExecutionSpec

__all__ = [
    "FUNCTION_LABEL",
    "INSTANCE_LABEL",
    "MANAGED_LABEL",
    "OWNER_LABEL",
    "REQUEST_LABEL",
    "container_labels",
]

MANAGED_LABEL = "faas.managed"
OWNER_LABEL = "faas.owner"
REQUEST_LABEL = "faas.request_id"
FUNCTION_LABEL = "faas.function_id"
INSTANCE_LABEL = "faas.instance"  # the server process that made it: faas.instance.instance_id()


def container_labels(owner: str, spec: ExecutionSpec) -> dict[str, str]:
    """The labels of the container that runs ``spec`` for executor ``owner``."""
    return {
        MANAGED_LABEL: "1",
        OWNER_LABEL: owner,
        INSTANCE_LABEL: instance.instance_id(),
        REQUEST_LABEL: spec.request_id,
        FUNCTION_LABEL: spec.function_id,
    }
