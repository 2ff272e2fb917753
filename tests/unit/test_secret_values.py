"""A call's secrets before any tier sees them: checked once, never printed."""

from __future__ import annotations

import logging

import pytest

from faas.config import Settings
from faas.errors import ValidationError
from faas.executors.fake import FakeExecutor
from faas.models import ExecutionSpec, InvokeRequest
from faas.orchestrator import Orchestrator
from faas.secrets.names import MAX_SECRET_BYTES, MAX_SECRETS_PER_FUNCTION
from faas.secrets.values import Secret, check_secrets, secrets_bytes

VALUE = b"hunter2-very-secret"


def spec(*secrets: Secret) -> ExecutionSpec:
    return ExecutionSpec(request_id="r", function_id="f", command=("true",), env={},
                         payload=b"", deadline=0.0, secrets=secrets)


def test_repr_and_str_show_the_name_and_size_never_the_value() -> None:
    secret = Secret("db", VALUE)
    assert repr(secret) == f"Secret(name='db', value=<{len(VALUE)} bytes>)"
    assert str(secret) == repr(secret)
    for text in (repr(spec(secret)), str(spec(secret)), f"{spec(secret)!r}"):
        assert VALUE.decode() not in text and "hunter2" not in text, text
        assert "Secret(name='db'" in text


def test_a_logged_spec_shows_no_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("faas.test").info("running %s", spec(Secret("db", VALUE)))
        logging.getLogger("faas.test").info("running %r", (Secret("db", VALUE),))
    assert "hunter2" not in caplog.text and "db" in caplog.text


def test_check_secrets_accepts_the_limits_exactly() -> None:
    many = tuple(Secret(f"s{i}", b"x" * MAX_SECRET_BYTES)
                 for i in range(MAX_SECRETS_PER_FUNCTION))
    assert check_secrets(iter(many)) == many
    assert check_secrets(()) == ()
    assert spec(Secret("A-b_9", b"")).secrets == (Secret("A-b_9", b""),)


@pytest.mark.parametrize(("secrets", "message"), [
    ((Secret("../etc", b"v"),), r"secrets\[0\]: a secret name is 1-64"),
    ((Secret(".hidden", b"v"),), "a secret name"),
    ((Secret("", b"v"),), "a secret name"),
    ((Secret("a" * 65, b"v"),), "a secret name"),
    ((Secret("a/b", b"v"),), "a secret name"),
    ((Secret("db", b"1"), Secret("db", b"2")), "'db' is given twice"),
    ((Secret("big", b"x" * (MAX_SECRET_BYTES + 1)),), "'big' holds 65537 bytes"),
    ((Secret("text", "str"),), "the value must be bytes"),  # type: ignore[arg-type]
    (tuple(Secret(f"s{i}", b"") for i in range(MAX_SECRETS_PER_FUNCTION + 1)),
     f"at most {MAX_SECRETS_PER_FUNCTION} secrets"),
    (("db",), r"secrets\[0\] is not a Secret"),
])
def test_check_secrets_refuses(secrets: tuple[Secret, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        check_secrets(secrets)
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValidationError, match=message):
        spec(*secrets)


def test_secrets_bytes_rounds_each_file_up_to_a_page() -> None:
    assert secrets_bytes(()) == 4096
    assert secrets_bytes((Secret("a", b""), Secret("b", b"x" * 4097))) == 4096 * 4


async def test_the_orchestrator_hands_the_secrets_to_the_executor() -> None:
    executor = FakeExecutor(name="sandbox")
    orchestrator = Orchestrator(Settings(), {"sandbox": executor})
    secrets = (Secret("db", VALUE),)
    await orchestrator.invoke("f", InvokeRequest(command=["x"]), "req", secrets=secrets)
    await orchestrator.invoke("f", InvokeRequest(command=["x"]), "req")
    assert [call.secrets for call in executor.calls] == [secrets, ()]
    with pytest.raises(ValidationError, match="given twice"):
        orchestrator.build_spec("f", InvokeRequest(command=["x"]), "r", 0.0,
                                secrets=secrets * 2)
