"""A function spec from hostile JSON, and a deployed call built over it."""

from __future__ import annotations

from typing import Any

import pytest

from faas.config import Settings
from faas.errors import InvalidSpec, ValidationError
from faas.functions import deployed_request, parse_spec
from faas.store import FunctionSpec

SETTINGS = Settings()
EXECUTORS = {"sandbox", "docker"}


def problems(data: Any) -> list[str]:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(data, SETTINGS, EXECUTORS)
    return caught.value.problems


def test_a_full_spec_is_kept_whole() -> None:
    spec = parse_spec({"command": ["a", "b"], "image": "i", "executor": "docker",
                       "env_vars": {"K": "v"}, "timeout_s": 2.5, "memory_mb": 64, "vcpus": 2,
                       "max_concurrency": 3, "description": "d", "labels": {"t": "x"},
                       "content_type": "text/plain; charset=utf-8"}, SETTINGS, EXECUTORS)
    assert spec.command == ("a", "b") and spec.env_vars == {"K": "v"} and spec.vcpus == 2
    assert spec.max_concurrency == 3 and spec.content_type == "text/plain; charset=utf-8"


@pytest.mark.parametrize("data, field", [
    ({}, "command"),
    ({"command": []}, "command"),
    ({"command": [""]}, "command"),
    ({"command": ["a\x00"]}, "command"),
    ({"command": ["x" * 70_000]}, "command"),
    ({"command": ["x"], "executor": "nope"}, "executor"),
    ({"command": ["x"], "image": "i\n"}, "image"),
    ({"command": ["x"], "env_vars": ["A=1"]}, "env_vars"),
    ({"command": ["x"], "env_vars": {"A": 1}}, "env_vars"),
    ({"command": ["x"], "env_vars": {"A": "x" * 70_000}}, "env_vars"),
    ({"command": ["x"], "timeout_s": 0}, "timeout_s"),
    ({"command": ["x"], "timeout_s": True}, "timeout_s"),
    ({"command": ["x"], "timeout_s": SETTINGS.max_timeout_s + 1}, "timeout_s"),
    ({"command": ["x"], "memory_mb": 64.0}, "memory_mb"),
    ({"command": ["x"], "memory_mb": SETTINGS.max_memory_mb + 1}, "memory_mb"),
    ({"command": ["x"], "vcpus": SETTINGS.max_vcpus + 1}, "vcpus"),
    ({"command": ["x"], "max_concurrency": 0}, "max_concurrency"),
    ({"command": ["x"], "description": "d" * 1025}, "description"),
    ({"command": ["x"], "labels": {"a=b": "c"}}, "labels"),
    ({"command": ["x"], "labels": {"k": "v\n"}}, "labels"),
    ({"command": ["x"], "labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
    ({"command": ["x"], "content_type": "text/plain\r\nX-Evil: 1"}, "content_type"),
    ({"command": ["x"], "content_type": "nonsense"}, "content_type"),
    ({"command": ["x"], "secret": "?"}, "spec"),
])
def test_each_problem_is_named(data: dict[str, Any], field: str) -> None:
    assert [p.split(":")[0] for p in problems(data)] == [field]


def test_not_an_object_is_refused() -> None:
    assert problems(["command"]) == ["spec: must be a JSON object"]


SPEC = FunctionSpec(command=("run",), env_vars={"A": "1", "B": "2"}, timeout_s=10,
                    memory_mb=128)


def test_the_callers_env_goes_over_the_functions() -> None:
    request = deployed_request(SPEC, {"env_vars": ["B=3", "C=4"], "payload": "aGk="},
                               SETTINGS)
    assert request.command == ["run"] and request.payload == b"hi"
    assert request.env() == {"A": "1", "B": "3", "C": "4"}
    assert request.timeout_s == 10 and request.memory_mb == 128


@pytest.mark.parametrize("body, words", [
    ({"command": ["sh"]}, "command cannot be given"),
    ({"executor": "docker", "image": "x"}, "image, executor cannot be given"),
    ({"timeout_s": 11}, "timeout_s 11 exceeds the function's 10"),
    ({"memory_mb": 129}, "memory_mb 129 exceeds the function's 128"),
    ({"vcpus": 2}, "vcpus 2 exceeds the function's 1"),
    ({"nope": 1}, "nope"),
    ({"payload": 5}, "payload"),
])
def test_what_a_caller_may_not_do(body: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        deployed_request(SPEC, body, SETTINGS)


def test_a_spec_lists_the_secrets_its_calls_get() -> None:
    spec = parse_spec({"command": ["x"], "secrets": ["db-password", "API_TOKEN"]}, SETTINGS,
                      EXECUTORS)
    assert spec.secrets == ("db-password", "API_TOKEN")
    assert parse_spec({"command": ["x"]}, SETTINGS, EXECUTORS).secrets == ()


@pytest.mark.parametrize("secrets", [
    "db-password", ["a", "a"], ["../etc"], [".hidden"], ["a/b"], [""], ["x" * 65], [1],
    [f"s{i}" for i in range(33)], {"a": "b"},
])
def test_bad_secret_lists_are_named(secrets: Any) -> None:
    assert [p.split(":")[0] for p in problems({"command": ["x"], "secrets": secrets})] == [
        "secrets"]


@pytest.mark.parametrize("body", [{"secrets": ["db"]}, {"secrets": []}])
def test_a_caller_cannot_name_secrets(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="secrets"):
        deployed_request(SPEC, body, SETTINGS)
