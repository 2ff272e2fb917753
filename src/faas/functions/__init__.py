"""Deployed functions between HTTP and the store: specs, calls, caps and counts.

    parse_spec(data, settings, executors) -> FunctionSpec   (InvalidSpec names every problem)
    deployed_request(spec, body, settings) -> InvokeRequest (the caller's body over the spec)
    Functions.open(settings, metrics)     the store, bundle store, gates and counts of a server
    views: version_json, summary_json, function_json (the HTTP contract's objects)
"""

from faas.functions.deployed import deployed_request
from faas.functions.service import Functions, outcome_of
from faas.functions.spec import MAX_SPEC_BYTES, parse_spec

__all__ = ["MAX_SPEC_BYTES", "Functions", "deployed_request", "outcome_of", "parse_spec"]
