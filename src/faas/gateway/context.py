"""What every route module is built around: one object per app, made by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from faas.config import Settings
from faas.errors import StoreUnavailable
from faas.functions import Functions
from faas.gateway.budget import ByteBudget
from faas.invocations.service import Invocations
from faas.orchestrator import Orchestrator
from faas.secrets.service import Secrets
from faas.secrets.values import Secret
from faas.tenancy.authenticator import Authenticator
from faas.tenancy.enforcement import TenantQuotas
from faas.tenancy.principal import DEFAULT_TENANT, tenant_of


@dataclass(slots=True)
class Gateway:
    """The settings, orchestrator, request-body memory budget, functions and records of one
    app.

    Each resource module's ``add_routes(api, gateway)`` declares handlers that
    close over this object, so the hot path pays for no dependency injection.
    """

    settings: Settings
    orchestrator: Orchestrator
    budget: ByteBudget
    #: Deployed functions (store, bundles); None: this app has none (every id is ad hoc).
    functions: Functions | None = None
    #: Records and async calls: opened with the app (needs a loop) when it has functions.
    invocations: Invocations | None = None
    #: Who is calling (keys, open mode); set by ``create_app``.
    authenticator: Authenticator | None = None
    #: Tenants' secrets (the store and the master key): opened by ``vault()`` on first use.
    secrets: Secrets | None = None
    #: Each tenant's quotas (``faas.tenancy.enforcement``); set by ``create_app``.
    quotas: TenantQuotas | None = None

    def tenant_quotas(self) -> TenantQuotas:
        """The quotas' enforcement (the server's defaults only, if none was set)."""
        if self.quotas is None:
            self.quotas = TenantQuotas(self.settings)
        return self.quotas

    def records(self) -> Invocations:
        """The invocation records, or ``StoreUnavailable`` (503) if this app keeps none."""
        if self.invocations is None:
            raise StoreUnavailable("this server keeps no invocation records")
        return self.invocations

    def deployed(self) -> Functions:
        """The deployed functions, or ``StoreUnavailable`` (503) if this app has none."""
        if self.functions is None:
            raise StoreUnavailable("this server keeps no deployed functions")
        return self.functions

    async def call_secrets(self, function_id: str,
                           names: tuple[str, ...]) -> tuple[Secret, ...]:
        """The values of the secrets ``names`` a call of ``function_id`` (a qualified id)
        gets, read from its tenant's secrets now; ``SecretNotFound`` names one not set."""
        if not names:
            return ()
        values = await (await self.vault()).for_call(tenant_of(function_id) or DEFAULT_TENANT,
                                                     names)
        return tuple(Secret(name, value) for name, value in values)

    async def vault(self) -> Secrets:
        """The tenants' secrets, opened on first use (loading or making the master key);
        ``StoreUnavailable`` (503) if this app keeps no store."""
        if self.secrets is None:
            opened = await Secrets.open(self.settings, self.deployed().store)
            if self.secrets is None:  # another request may have opened it meanwhile
                self.secrets = opened
        return self.secrets
