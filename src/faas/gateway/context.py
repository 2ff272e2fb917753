"""What every route module is built around: one object per app, made by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from faas.config import Settings
from faas.gateway.budget import ByteBudget
from faas.orchestrator import Orchestrator


@dataclass(frozen=True, slots=True)
class Gateway:
    """The settings, the orchestrator and the request-body memory budget of one app.

    Each resource module's ``add_routes(api, gateway)`` declares handlers that
    close over this object, so the hot path pays for no dependency injection.
    """

    settings: Settings
    orchestrator: Orchestrator
    budget: ByteBudget
