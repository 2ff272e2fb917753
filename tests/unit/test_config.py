"""Settings: every environment variable the server reads is one entry of ``VARIABLES``,
read and validated in ``Settings.from_env``, and listed in the README's table."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from faas.config import Settings
from faas.config_vars import VARIABLES, Var
from faas.errors import ValidationError
from faas.logs import parse_levels

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "faas"
NAMES = [var.name for var in VARIABLES]
_VAR_NAME = re.compile(r"\b(?:FAAS|FC)_[A-Z0-9_]*[A-Z0-9]\b")


def _field(settings: Settings, attr: str) -> Any:
    value: Any = settings
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def test_defaults_and_env_overrides() -> None:
    s = Settings.from_env({})
    assert s.port == 8080 and s.default_executor == "sandbox"
    assert s.max_payload_bytes == 6 * 1024 * 1024 and s.output_limit_bytes == 1024 * 1024
    s = Settings.from_env({"FAAS_GATEWAY_PORT": "9000", "FAAS_MAX_CONCURRENCY": "3",
                           "FAAS_EXECUTORS": "sandbox, docker", "RUST_LOG": "debug"})
    assert (s.port, s.max_concurrency, s.executors, s.log_level) == (
        9000, 3, ("sandbox", "docker"), "debug")
    assert Settings.from_env({"RUST_LOG": "debug", "FAAS_LOG": "warn"}).log_level == "warn"


def test_every_variable_is_listed_once() -> None:
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("var", VARIABLES, ids=NAMES)
def test_each_variable_reaches_its_setting_and_a_bad_value_names_it(var: Var) -> None:
    default = _field(Settings.from_env({}), var.attr)
    value = _field(Settings.from_env({var.name: var.example}), var.attr)
    assert value != default and value == var.parse(var.example)
    assert _field(Settings.from_env({var.name: ""}), var.attr) == default  # empty: unset
    if var.bad is not None:
        with pytest.raises(ValidationError, match=var.name):
            Settings.from_env({var.name: var.bad})


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), ("YES", True),
                                          ("on", True), ("0", False), ("false", False),
                                          ("No", False), ("off", False)])
def test_booleans_accept_exactly_the_usual_words(raw: str, expected: bool) -> None:
    assert Settings.from_env({"FAAS_VM_SNAPSHOT": raw}).microvm.snapshots is expected


@pytest.mark.parametrize("raw", ["2", "y", "enabled", "-1", "truth"])
def test_other_boolean_words_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="FAAS_QEMU_SANDBOX"):
        Settings.from_env({"FAAS_QEMU_SANDBOX": raw})


@pytest.mark.parametrize("env", [{"FAAS_GATEWAY_PORT": "http"}, {"FAAS_GATEWAY_PORT": "0"},
                                 {"FAAS_DEFAULT_TIMEOUT_S": "900"},
                                 {"FAAS_DEFAULT_EXECUTOR": "nope"},
                                 {"FAAS_POOL_IDLE_S": "nan"}])
def test_invalid_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=next(iter(env))):
        Settings.from_env(env)


def test_vm_limits_are_the_servers_unless_set_lower() -> None:
    from faas.executors.microvm.config import MicroVMSettings

    vm = MicroVMSettings.from_settings(Settings.from_env({"FAAS_MAX_VCPUS": "4",
                                                          "FAAS_MAX_MEMORY_MB": "4096"}))
    assert (vm.max_vcpus, vm.max_memory_mib) == (4, 4096)
    vm = MicroVMSettings.from_settings(Settings.from_env({
        "FAAS_MAX_VCPUS": "4", "FAAS_VM_MAX_VCPUS": "1", "FAAS_VM_MAX_MEMORY_MIB": "512"}))
    assert (vm.max_vcpus, vm.max_memory_mib) == (1, 512)
    with pytest.raises(ValidationError, match="FAAS_VM_MAX_MEMORY_MIB"):
        Settings.from_env({"FAAS_VM_MAX_MEMORY_MIB": "4096"})  # over FAAS_MAX_MEMORY_MB


def _string_constants(path: Path) -> list[str]:
    return [node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_variable_is_read_outside_the_list() -> None:
    """Every FAAS_*/FC_* name in a string of src is a listed variable, and only
    ``config.py`` touches the environment."""
    unknown: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        for text in _string_constants(path):
            for name in _VAR_NAME.findall(text):
                if name not in NAMES:
                    unknown[name] = str(path.relative_to(REPO))
        if path != SRC / "config.py":  # config_vars.py only parses
            source = path.read_text()
            assert "os.environ" not in source and "getenv" not in source, path
    assert unknown == {}


def test_readme_table_lists_every_variable() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {name: line for line in table.splitlines() if line.startswith("| `")
            for name in re.findall(r"`((?:FAAS|FC|RUST)_[A-Z0-9_]+)`", line.split(" | ")[0])}
    assert sorted(set(NAMES) - set(rows)) == []
    for var in VARIABLES:
        assert ("**debug only**" in rows[var.name]) == var.debug, rows[var.name]


@pytest.mark.parametrize("command", ["serve", "doctor"])
def test_a_bad_value_is_one_clear_line_from_the_cli(command: str) -> None:
    env = {**os.environ, "FAAS_QEMU_SANDBOX": "maybe", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "faas.cli", command], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "faas: FAAS_QEMU_SANDBOX='maybe': not a boolean (1/0, true/false, yes/no, on/off)"]
    assert proc.stdout == ""


def test_rust_log_style_levels() -> None:
    assert parse_levels("info") == (logging.INFO, {})
    assert parse_levels("faas_gateway=debug,warn") == (logging.WARNING,
                                                       {"faas.gateway": logging.DEBUG})
    with pytest.raises(ValueError):
        parse_levels("loud")


def test_a_bad_secret_value_is_named_but_never_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.from_env({"FAAS_DATABASE_URL": "mysql://root:hunter2@db/faas"})
    assert "FAAS_DATABASE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "mysql://" not in str(caught.value)
