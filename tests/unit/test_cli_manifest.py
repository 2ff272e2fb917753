"""faas.toml: the documented format, its errors, and what the bundle of a folder leaves out."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from faas.client import Manifest, is_excluded, load_manifest, pack_function_folder, parse_manifest
from faas.client import manifest as manifest_module
from faas.errors import BundleRejected, ValidationError

FULL = '''
[function]
name = "hello"
command = ["python3", "/function/handler.py"]
executor = "sandbox"
image = "python:3.12"
timeout_s = 2.5
memory_mb = 128
vcpus = 1
max_concurrency = 4
description = "says hello"
content_type = "application/json"
exclude = ["tests", "docs/*.png"]
secrets = ["db-password"]

[function.labels]
team = "web"

[function.env]
GREETING = "hi"
'''


def test_every_documented_key_is_read() -> None:
    m = parse_manifest(FULL)
    assert m.name == "hello" and m.exclude == ("tests", "docs/*.png")
    assert m.spec == {
        "command": ["python3", "/function/handler.py"], "executor": "sandbox",
        "image": "python:3.12", "timeout_s": 2.5, "memory_mb": 128, "vcpus": 1,
        "max_concurrency": 4, "description": "says hello", "content_type": "application/json",
        "labels": {"team": "web"}, "env_vars": {"GREETING": "hi"},
        "secrets": ["db-password"]}


def test_the_module_docstring_example_is_a_valid_manifest() -> None:
    doc = manifest_module.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\nAn ``exclude``", 1)[0]
    lines = [line[4:] for line in example.splitlines()]
    assert parse_manifest("\n".join(lines)).spec.keys() == parse_manifest(FULL).spec.keys()


def test_no_file_is_an_empty_manifest(tmp_path: Path) -> None:
    assert load_manifest(tmp_path) == Manifest()
    (tmp_path / "faas.toml").write_text("[function]\n")
    assert load_manifest(tmp_path) == Manifest()


@pytest.mark.parametrize("text,problem", [
    ("[function\n", "not valid TOML"),
    ("[functions]\nname = 'x'\n", "unknown table or key 'functions'"),
    ("[function]\ntimeout = 3\n", "function.timeout: unknown key"),
    ("[function]\ncommand = 'python3 x.py'\n", "function.command: must be a non-empty list"),
    ("[function]\ncommand = []\n", "function.command: must be a non-empty list"),
    ("[function]\ncommand = ['', 'x']\n", "function.command: must be a non-empty list"),
    ("[function]\nmemory_mb = '128'\n", "function.memory_mb: must be an integer >= 1"),
    ("[function]\nvcpus = true\n", "function.vcpus: must be an integer >= 1"),
    ("[function]\ntimeout_s = 0\n", "function.timeout_s: must be a number > 0"),
    ("[function]\nname = ''\n", "function.name: must be a non-empty string"),
    ("[function.env]\nPORT = 8080\n", "function.env: must be a table of string values"),
    ("[function]\nexclude = 'tests'\n", "function.exclude: must be a list"),
    ("function = 3\n", "function: must be a table"),
])
def test_a_bad_manifest_names_the_file_and_the_key(text: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_manifest(text, "here/faas.toml")
    assert str(caught.value).startswith("here/faas.toml: ")
    assert problem in str(caught.value)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_manifest("[function]\nmemory_mb = 0\nvcpus = 'two'\nnmae = 'x'\n")
    text = str(caught.value)
    assert "memory_mb" in text and "vcpus" in text and "'nmae'" not in text and "nmae" in text


@pytest.mark.parametrize("path,patterns,excluded", [
    ("tests", ["tests"], True),
    ("src/tests", ["tests"], True),
    ("README.md", ["*.md"], True),
    ("docs/a.png", ["docs/*.png"], True),
    ("docs/sub/a.png", ["/docs/*.png"], True),  # fnmatch's * crosses '/'
    ("a.png", ["docs/*.png"], False),
    ("testsuite", ["tests"], False),
])
def test_exclude_globs(path: str, patterns: list[str], excluded: bool) -> None:
    assert is_excluded(path, patterns) is excluded


def _names(bundle: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return {member.name: member for member in tar.getmembers()}


def test_the_bundle_leaves_out_the_defaults_and_the_excludes(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("print('hi')\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "faas.toml").write_text(FULL)
    for folder in (".git", "__pycache__", "lib/__pycache__", "tests", ".venv/bin"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "x").write_text("x")
    (tmp_path / "lib" / "util.py").write_text("")
    (tmp_path / "lib" / "util.pyc").write_text("")
    (tmp_path / "lib" / "link.py").symlink_to("util.py")
    bundle, info = pack_function_folder(tmp_path, ["tests"])
    names = _names(bundle)
    assert sorted(names) == ["handler.py", "lib", "lib/link.py", "lib/util.py", "run.sh"]
    assert names["run.sh"].mode == 0o755 and names["handler.py"].mode == 0o644
    assert names["lib/link.py"].issym() and names["lib/link.py"].linkname == "util.py"
    assert info.files == 3 and info.packed_bytes == len(bundle)
    again, _ = pack_function_folder(tmp_path, ["tests"])
    assert again == bundle  # deterministic: the same folder, the same bytes


def test_what_the_server_would_refuse_is_refused_before_upload(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(BundleRejected, match="'pipe'"):
        pack_function_folder(tmp_path)
    (tmp_path / "pipe").unlink()
    (tmp_path / "escape").symlink_to("/etc/passwd")
    with pytest.raises(BundleRejected, match="'escape'"):
        pack_function_folder(tmp_path)
    with pytest.raises(ValidationError, match="not a folder"):
        pack_function_folder(tmp_path / "missing")
