import logging

import pytest

from faas.config import Settings
from faas.errors import ValidationError
from faas.logs import parse_levels


def test_defaults_and_env_overrides() -> None:
    s = Settings.from_env({})
    assert s.port == 8080 and s.default_executor == "sandbox"
    assert s.max_payload_bytes == 6 * 1024 * 1024 and s.output_limit_bytes == 1024 * 1024
    s = Settings.from_env({"FAAS_GATEWAY_PORT": "9000", "FAAS_MAX_CONCURRENCY": "3",
                           "FAAS_EXECUTORS": "sandbox, docker", "RUST_LOG": "debug"})
    assert (s.port, s.max_concurrency, s.executors, s.log_level) == (
        9000, 3, ("sandbox", "docker"), "debug")


@pytest.mark.parametrize("env", [{"FAAS_GATEWAY_PORT": "http"}, {"FAAS_GATEWAY_PORT": "0"},
                                 {"FAAS_DEFAULT_TIMEOUT_S": "900"},
                                 {"FAAS_DEFAULT_EXECUTOR": "nope"}])
def test_invalid_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env(env)


def test_rust_log_style_levels() -> None:
    assert parse_levels("info") == (logging.INFO, {})
    assert parse_levels("faas_gateway=debug,warn") == (logging.WARNING,
                                                       {"faas.gateway": logging.DEBUG})
    with pytest.raises(ValueError):
        parse_levels("loud")
