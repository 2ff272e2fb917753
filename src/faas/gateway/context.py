"""What every route module is built around: one object per app, made by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from faas.config import Settings
from faas.errors import StoreUnavailable
from faas.functions import Functions
from faas.gateway.budget import ByteBudget
from faas.orchestrator import Orchestrator


@dataclass(frozen=True, slots=True)
class Gateway:
    """The settings, orchestrator, request-body memory budget and functions of one app.

    Each resource module's ``add_routes(api, gateway)`` declares handlers that
    close over this object, so the hot path pays for no dependency injection.
    """

    settings: Settings
    orchestrator: Orchestrator
    budget: ByteBudget
    #: Deployed functions (store, bundles); None: this app has none (every id is ad hoc).
    functions: Functions | None = None

    def deployed(self) -> Functions:
        """The deployed functions, or ``StoreUnavailable`` (503) if this app has none."""
        if self.functions is None:
            raise StoreUnavailable("this server keeps no deployed functions")
        return self.functions
