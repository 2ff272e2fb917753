"""The store's public names, pinned: the integrating layers code against these."""

from __future__ import annotations

import faas.store
from faas.errors import Conflict, FaasError, NotFound, SchemaTooNew, StoreUnavailable


def test_public_names_are_pinned() -> None:
    assert sorted(faas.store.__all__) == sorted(
        ["DEFAULT_PAGE_SIZE", "FUNCTION_ID_PATTERN", "MAX_LABEL_FILTERS", "MAX_PAGE_SIZE",
         "SCHEMA_VERSION", "BundleRef", "FunctionInfo", "FunctionSpec", "FunctionVersion",
         "Page", "Store", "open_store"])
    for name in faas.store.__all__:
        assert hasattr(faas.store, name)


def test_store_errors_carry_their_http_status() -> None:
    assert [e.status for e in (NotFound, Conflict, StoreUnavailable, SchemaTooNew)] == [
        404, 409, 503, 503]
    assert all(issubclass(e, FaasError) for e in (NotFound, Conflict, StoreUnavailable))
    assert issubclass(SchemaTooNew, StoreUnavailable)
