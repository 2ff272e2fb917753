"""The mutation check's declarations stay applicable, and its verdicts mean what they say.

``scripts/mutants.py`` (``make mutants``) runs the mutants; these tests only make sure,
in every ordinary test run, that ``mutants.toml`` has not rotted: each snippet still
occurs exactly once in the code it patches, and each named test file exists.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("faas_mutants", REPO / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mutants = _load_script()


def test_every_declared_mutant_applies_exactly_once() -> None:
    declared = mutants.load(REPO / "mutants.toml")
    assert len(declared) >= 40
    for m in declared:
        assert m.defence, f"{m.name}: say which defence it removes"
        if m.expect == "survive":
            assert m.reason, m.name


def test_a_snippet_that_no_longer_occurs_once_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\ny = 1\n")
    twice = mutants.Mutant("twice", "src/a.py", " = 1", " = 2", ())
    gone = mutants.Mutant("gone", "src/a.py", "z = 1", "z = 2", ())
    once = mutants.Mutant("once", "src/a.py", "y = 1", "y = 2", ())
    assert "occurs 2 times" in mutants.snippet_problems(twice, tmp_path)[0]
    assert "occurs 0 times" in mutants.snippet_problems(gone, tmp_path)[0]
    assert mutants.snippet_problems(once, tmp_path) == []
    mutants.apply(once, tmp_path)
    assert (tmp_path / "src" / "a.py").read_text() == "x = 1\ny = 2\n"
    with pytest.raises(mutants.DeclarationError):
        mutants.apply(once, tmp_path)  # applied: the old snippet is gone


def test_declarations_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text(
        '[[mutant]]\nname = "a"\nfile = "src/faas/cli/__init__.py"\nold = "no such text"\n'
        'new = "x"\n'
        'tests = ["tests/unit/test_models.py"]\n'
        '[[mutant]]\nname = "b"\nfile = "src/faas/cli/__init__.py"\nold = "def main("\nnew = "x"\n'
        'expect = "survive"\n'
        '[[mutant]]\nname = "c"\nfile = "src/faas/cli/__init__.py"\nold = "def main("\nnew = "x"\n')
    with pytest.raises(mutants.DeclarationError) as info:
        mutants.load(bad)
    text = str(info.value)
    assert "a: the old snippet occurs 0 times" in text
    assert "needs a reason" in text
    assert "no tests" in text


def test_junit_verdicts(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.a" name="test_ok"/>'
        '<testcase classname="tests.a" name="test_bad"><failure message="assert 1 == 2"/>'
        '</testcase>'
        '<testcase classname="tests.a" name="test_skip"><skipped message="no bwrap"/></testcase>'
        '</testsuite></testsuites>')
    report = mutants.read_junit(junit)
    assert report.passed == ["tests.a::test_ok"]
    assert report.failed == ["tests.a::test_bad: assert 1 == 2"]
    assert report.skipped == [("tests.a::test_skip", "no bwrap")]
    assert mutants.read_junit(tmp_path / "missing.xml") is None


def test_select_by_name_or_pattern() -> None:
    declared = [mutants.Mutant(n, "f", "o", "n", ("t",)) for n in ("docker-a", "docker-b", "x")]
    assert [m.name for m in mutants.select(declared, ["docker-*"])] == ["docker-a", "docker-b"]
    assert mutants.select(declared, None) == declared
    with pytest.raises(mutants.DeclarationError):
        mutants.select(declared, ["nope"])
