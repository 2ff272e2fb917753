"""Fuzz the gateway through its own OpenAPI document (schemathesis), on a real ``faas serve``.

Each operation of ``/openapi.json`` gets a bounded number of generated requests
(valid and invalid ones). No answer may be a 5xx other than the documented
503 (unavailable) and 504 (deadline), every status must be one the document
lists, and bodies must match their documented schema. Commands generated for
the invoke route really run, in the sandbox tier, with a 2 s default and 5 s
maximum deadline so they finish fast. Afterwards the server must be alive,
answer a normal call, have logged no traceback, and have left nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from helpers import Server, assert_no_host_details, assert_still_serving, running_server

pytestmark = pytest.mark.sandbox

FUZZ_ENV = {
    "FAAS_EXECUTORS": "sandbox",
    "FAAS_DEFAULT_TIMEOUT_S": "2",
    "FAAS_MAX_TIMEOUT_S": "5",
    "FAAS_HTTP_READ_TIMEOUT_S": "5",
}
#: 5xx the document lists as platform states rather than failures.
ALLOWED_5XX = {503, 504}


@pytest.fixture(scope="module")
def fuzz_server(bwrap_available: None,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("fuzz"), FUZZ_ENV) as srv:
        yield srv
    assert srv.proc.returncode == 0, srv.log()[-4000:]


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", timeout=10)


#: Every operation of the document, and how many requests each gets (invalid ones
#: too where there is input to get wrong).
OPERATIONS = [
    ("POST", "/functions/{function_id}/invoke", GenerationMode.POSITIVE, 40),
    ("POST", "/functions/{function_id}/invoke", GenerationMode.NEGATIVE, 40),
    ("PUT", "/functions/{function_id}", GenerationMode.POSITIVE, 30),
    ("PUT", "/functions/{function_id}", GenerationMode.NEGATIVE, 30),
    ("GET", "/functions", GenerationMode.POSITIVE, 10),
    ("GET", "/functions", GenerationMode.NEGATIVE, 10),
    ("GET", "/functions/{function_id}", GenerationMode.POSITIVE, 10),
    ("GET", "/functions/{function_id}/versions/{version}", GenerationMode.POSITIVE, 10),
    ("DELETE", "/functions/{function_id}", GenerationMode.POSITIVE, 10),
    ("POST", "/function/{function_id}", GenerationMode.POSITIVE, 15),
    ("POST", "/function/{function_id}", GenerationMode.NEGATIVE, 15),
    ("GET", "/invocations", GenerationMode.POSITIVE, 10),
    ("GET", "/invocations", GenerationMode.NEGATIVE, 10),
    ("GET", "/invocations/{invocation_id}", GenerationMode.POSITIVE, 10),
    ("GET", "/invocations/{invocation_id}", GenerationMode.NEGATIVE, 10),
    ("DELETE", "/invocations/{invocation_id}", GenerationMode.POSITIVE, 10),
    ("PUT", "/secrets/{name}", GenerationMode.POSITIVE, 15),
    ("PUT", "/secrets/{name}", GenerationMode.NEGATIVE, 15),
    ("GET", "/secrets", GenerationMode.POSITIVE, 5),
    ("GET", "/secrets/{name}", GenerationMode.POSITIVE, 10),
    ("GET", "/secrets/{name}", GenerationMode.NEGATIVE, 10),
    ("DELETE", "/secrets/{name}", GenerationMode.POSITIVE, 10),
    ("GET", "/healthz", GenerationMode.POSITIVE, 3),
    ("GET", "/readyz", GenerationMode.POSITIVE, 3),
    ("GET", "/metrics", GenerationMode.POSITIVE, 3),
]


def no_undocumented_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 5xx is a failure unless it is a documented 503/504 with a JSON error."""
    if response.status_code < 500:
        return None
    documented = str(response.status_code) in case.operation.definition.raw.get(
        "responses", {})
    if response.status_code not in ALLOWED_5XX or not documented:
        raise AssertionError(
            f"{response.status_code} from {case.method} {case.formatted_path}: "
            f"{response.text[:500]}")
    return None


def no_host_details_in_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code >= 400:
        assert_no_host_details(response.text)
    return None


def test_the_fuzzed_operations_are_all_there_are(api_schema: Any) -> None:
    documented = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert documented == {(m, p) for m, p, _, _ in OPERATIONS}


@pytest.mark.parametrize("method, path, mode, examples", OPERATIONS,
                         ids=[f"{m} {p} {g.value}" for m, p, g, _ in OPERATIONS])
def test_fuzzed_requests_get_documented_answers(api_schema: Any, method: str, path: str,
                                                mode: GenerationMode, examples: int) -> None:
    operation = api_schema[path][method]
    checks = [no_undocumented_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance, no_host_details_in_errors]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True,
                         database=None, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=checks, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    seen: dict[int, int] = {}
    run()
    print(f"{method} {path} {mode.value}: {sorted(seen.items())}")
    # The run reached the server's logic, not only its parser.
    if path.endswith("/invoke"):
        wanted = 200 if mode is GenerationMode.POSITIVE else 400
        assert seen.get(wanted), seen
    if method == "PUT":
        assert seen.get(201 if mode is GenerationMode.POSITIVE else 400), seen
def test_server_survives_the_fuzzing(fuzz_server: Server) -> None:
    assert_still_serving(fuzz_server)
    bad = [line[:300] for line in fuzz_server.log().splitlines()
           if "Traceback" in line or '"exc"' in line or "unhandled" in line]
    assert not bad, bad
