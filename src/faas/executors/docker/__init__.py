"""The container tier: one fresh Docker container per invocation, over the Engine API.

    engine.py           async Engine API client on httpx (endpoint, injectable transport,
                        version negotiation, every HTTP status -> faas.errors)
    stream.py           the attach stream's frame demultiplexer (capped stdout/stderr)
    stdio.py            payload in, output out over the attach stream
    container.py        the create body: limits and hardening (ContainerPolicy)
    labels.py           the labels every container carries
    seccomp_profile.py  the seccomp profile passed by default
    executor.py         DockerExecutor: create, attach, start, pump, wait, remove
    sweep.py            removing what dead servers left
    probe.py            availability(): can the tier run here, and if not why

Nothing here uses the docker SDK: ``engine`` is the only way to the daemon.
"""

from faas.executors.docker.container import DEFAULT_USER, MASKED_PATHS
from faas.executors.docker.engine import DEFAULT_BASE_URL, Engine
from faas.executors.docker.executor import DockerExecutor
from faas.executors.docker.labels import (
    FUNCTION_LABEL,
    INSTANCE_LABEL,
    MANAGED_LABEL,
    OWNER_LABEL,
    REQUEST_LABEL,
)
from faas.executors.docker.probe import availability

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_USER",
    "FUNCTION_LABEL",
    "INSTANCE_LABEL",
    "MANAGED_LABEL",
    "MASKED_PATHS",
    "OWNER_LABEL",
    "REQUEST_LABEL",
    "DockerExecutor",
    "Engine",
    "availability",
]
