"""The handlers' side of tenancy: the caller's own ids, and the audit log.

``owned(name)`` is the stored id of the caller's function ``name``: every id
a handler takes from a path or a query goes through it before it reaches the
store, so another tenant's function is never found (it is another id).
``audit`` records what an admin or developer changed; a failure to write it
is logged, and does not undo the change (the change already committed).
"""

from __future__ import annotations

import logging

from faas.errors import FaasError
from faas.gateway.auth import current_principal
from faas.gateway.context import Gateway
from faas.logs import clip
from faas.tenancy.principal import Principal, qualify

log = logging.getLogger("faas.audit")


def owned(name: str) -> str:
    return qualify(current_principal().tenant, name)


async def audit(gateway: Gateway, principal: Principal, action: str, target: str,
                detail: str | None = None) -> None:
    if gateway.functions is None:
        return
    try:
        await gateway.functions.store.tenants.audit(principal.tenant, principal.key_id, action,
                                                    target, detail)
    except FaasError as exc:
        log.error("could not write the audit entry %s %s: %s", action, clip(target, 100), exc)
