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

from helpers import (
    Server,
    assert_no_host_details,
    assert_still_serving,
    create_key,
    open_data_dir,
    running_server,
)

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
def keyed_server(bwrap_available: None,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """The fuzzed server, which requires keys, and an admin key made before it started."""
    with open_data_dir() as data:
        key = create_key(data)
        with running_server(tmp_path_factory.mktemp("fuzz"), FUZZ_ENV, data_dir=data) as srv:
            yield srv, key
        assert srv.proc.returncode == 0, srv.log()[-4000:]
        assert key not in srv.log()


@pytest.fixture(scope="module")
def fuzz_server(keyed_server: tuple[Server, str]) -> Server:
    return keyed_server[0]


@pytest.fixture(scope="module")
def admin_key(keyed_server: tuple[Server, str]) -> str:
    return keyed_server[1]


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
    # admin (with the admin key; these run last: they may change the default tenant's quotas)
    ("GET", "/whoami", GenerationMode.POSITIVE, 3),
    ("POST", "/tenants", GenerationMode.POSITIVE, 10),
    ("POST", "/tenants", GenerationMode.NEGATIVE, 10),
    ("GET", "/tenants", GenerationMode.POSITIVE, 3),
    ("GET", "/tenants/{name}", GenerationMode.POSITIVE, 5),
    ("GET", "/tenants/{name}", GenerationMode.NEGATIVE, 5),
    ("PUT", "/tenants/{name}/quotas", GenerationMode.POSITIVE, 10),
    ("PUT", "/tenants/{name}/quotas", GenerationMode.NEGATIVE, 10),
    ("POST", "/keys", GenerationMode.POSITIVE, 10),
    ("POST", "/keys", GenerationMode.NEGATIVE, 10),
    ("GET", "/keys", GenerationMode.POSITIVE, 5),
    ("GET", "/keys", GenerationMode.NEGATIVE, 5),
    ("DELETE", "/keys/{key_id}", GenerationMode.POSITIVE, 5),
    ("DELETE", "/keys/{key_id}", GenerationMode.NEGATIVE, 5),
    ("GET", "/audit", GenerationMode.POSITIVE, 5),
    ("GET", "/audit", GenerationMode.NEGATIVE, 5),
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
def test_fuzzed_requests_get_documented_answers(api_schema: Any, admin_key: str, method: str,
                                                path: str, mode: GenerationMode,
                                                examples: int) -> None:
    operation = api_schema[path][method]

    def no_admin_key_in_answers(ctx: Any, response: Any, case: Any) -> bool | None:
        assert admin_key not in response.text, f"{case.method} {case.formatted_path}"
        assert all(admin_key not in value for value in response.headers.values())
        return None

    checks = [no_undocumented_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance, no_host_details_in_errors, no_admin_key_in_answers]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True,
                         database=None, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    def run(case: Any) -> None:
        # Whatever was generated for the bearer scheme: the admin key, so every case
        # reaches the route's logic instead of stopping at the 401.
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {admin_key}"}
        response = case.call_and_validate(checks=checks, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    seen: dict[int, int] = {}
    run()
    print(f"{method} {path} {mode.value}: {sorted(seen.items())}")
    # The run reached the server's logic, not only its parser.
    if path.endswith("/invoke"):
        wanted = 200 if mode is GenerationMode.POSITIVE else 400
        assert seen.get(wanted), seen
    if method == "PUT" and path == "/functions/{function_id}":
        assert seen.get(201 if mode is GenerationMode.POSITIVE else 400), seen
    assert not seen.get(401) and not seen.get(403), seen
    if mode is GenerationMode.NEGATIVE and method in ("POST", "PUT"):
        assert seen.get(400), seen
    if (method, path, mode) in REACHED:
        assert seen.get(REACHED[method, path, mode]), seen


#: What a positive run of an admin operation must have answered at least once.
REACHED = {
    ("POST", "/tenants", GenerationMode.POSITIVE): 201,
    ("POST", "/keys", GenerationMode.POSITIVE): 201,
    ("GET", "/keys", GenerationMode.POSITIVE): 200,
    ("GET", "/audit", GenerationMode.POSITIVE): 200,
    ("GET", "/whoami", GenerationMode.POSITIVE): 200,
}


def test_server_survives_the_fuzzing(fuzz_server: Server, admin_key: str) -> None:
    # The fuzz may have set the default tenant's quotas to anything: back to the defaults.
    with fuzz_server.client(timeout=10) as c:
        reset = c.put("/tenants/default/quotas", json={"quotas": {}},
                      headers={"Authorization": f"Bearer {admin_key}"})
        assert reset.status_code == 200, reset.text
        assert c.get("/whoami").status_code == 401  # still keyed
    assert_still_serving(fuzz_server, key=admin_key)
    bad = [line[:300] for line in fuzz_server.log().splitlines()
           if "Traceback" in line or '"exc"' in line or "unhandled" in line]
    assert not bad, bad
