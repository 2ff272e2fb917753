import base64

import pytest
from pydantic import ValidationError

from faas.models import InvocationResult, InvokeRequest


def test_payload_as_byte_array_and_base64_agree() -> None:
    data = bytes(range(256))
    a = InvokeRequest.model_validate({"command": ["cat"], "payload": list(data)})
    b = InvokeRequest.model_validate({"command": ["cat"],
                                      "payload": base64.b64encode(data).decode()})
    assert a.payload == b.payload == data


@pytest.mark.parametrize("payload", [[256], [-1], ["a"], [1.5], "not base64!", {"x": 1}, 7])
def test_bad_payloads_are_rejected(payload: object) -> None:
    with pytest.raises(ValidationError):
        InvokeRequest.model_validate({"command": ["cat"], "payload": payload})


@pytest.mark.parametrize("body", [
    {"command": []},
    {"command": [""]},
    {"command": "ls"},
    {"command": ["a\x00b"]},
    {"command": ["env"], "env_vars": ["NOEQUALS"]},
    {"command": ["env"], "env_vars": ["1BAD=x"]},
    {"command": ["env"], "env_vars": "A=1"},
    {"command": ["env"], "unknown_field": 1},
    {"command": ["env"], "timeout_s": 0},
    {"command": ["env"], "output_encoding": "hex"},
])
def test_malformed_requests(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InvokeRequest.model_validate(body)


def test_env_vars_keep_equals_in_values_and_image_is_optional() -> None:
    req = InvokeRequest.model_validate({"command": ["env"], "env_vars": ["A=b=c", "EMPTY="]})
    assert req.env() == {"A": "b=c", "EMPTY": ""}
    assert req.image is None


def test_invalid_utf8_output_is_lossless_in_base64() -> None:
    raw = b"ok\xff\xfe\n"
    body = InvocationResult(stdout=raw, exit_code=0).to_json("base64")
    assert "\ufffd" in body["stdout"]
    assert base64.b64decode(body["stdout_base64"]) == raw
    assert "stdout_base64" not in InvocationResult(stdout=raw).to_json("text")
