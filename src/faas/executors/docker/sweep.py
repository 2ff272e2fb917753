"""Removing containers that servers which no longer run left behind.

A container whose ``faas.instance`` label names a server process that is not
alive (``faas.instance.alive``) was left by a crash. Containers of a live
server, the calling one included, and containers without the label are never
touched.
"""

from __future__ import annotations

import asyncio
import logging

from faas import instance
from faas.executors.docker.engine import Engine
from faas.executors.docker.labels import INSTANCE_LABEL

__all__ = ["remove_dead_instances"]

log = logging.getLogger(__name__)


async def remove_dead_instances(engine: Engine) -> int:
    """Remove every container of a dead server; return how many."""
    found = await engine.labelled_containers(INSTANCE_LABEL)
    dead = [cid for cid, labels in found.items()
            if not instance.alive(labels.get(INSTANCE_LABEL, ""))]
    await asyncio.gather(*(engine.remove_container(n) for n in dead))
    if dead:
        log.info("docker executor: removed %d container(s) of dead servers", len(dead))
    return len(dead)
