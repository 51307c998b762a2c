"""tests/addon/blender_lines.py: the install step that makes the other bpy releases' environments for the tests, on a
machine with a Python 3.13 and on one without."""
from pathlib import Path

import pytest

from tests.addon import blender_lines


@pytest.fixture
def no_python_3_13(monkeypatch, tmp_path):
    """A machine without Python 3.13: nothing on PATH answers as 3.13 and pyenv has none installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    impostor = bin_dir / "python3.13"  # a pyenv shim with no 3.13 selected fails like this
    impostor.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    impostor.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setattr(blender_lines, "ENVIRONMENT", tmp_path / "venv")
    # The Python 3.11 releases would be made for real (a download): only the 3.13 ones are this test's subject.
    monkeypatch.setattr(blender_lines, "TEST_BLENDERS", (blender_lines.OLDEST_313, blender_lines.NEWEST_313))


def test_without_python_3_13_the_install_step_says_so_in_one_line_and_the_tests_are_left_out(no_python_3_13, capsys):
    assert blender_lines.find_python((3, 13)) is None
    assert blender_lines.main([]) == 0  # the README's install command goes on to the demo
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m tests.addon.blender_lines" in err and "Python 3.13" in err, err
    assert "bpy 5.1.0, 5.3.0" in err, err
    # What leaves their tests out, in one line (conftest's pytest_terminal_summary).
    assert blender_lines.OLDEST_313.interpreter() is None and blender_lines.NEWEST_313.interpreter() is None
    assert not blender_lines.ENVIRONMENT.exists()
    assert blender_lines.main(["--require"]) == 1  # CI
    assert capsys.readouterr().err.count("\n") == 1


def test_a_pyenv_installed_python_3_13_is_found_without_selecting_it(no_python_3_13, tmp_path):
    """pyenv's shim answers only for a selected version (PYENV_VERSION=3.13.0); its installed binary always runs."""
    installed = tmp_path / "pyenv" / "versions" / "3.13.0" / "bin" / "python3.13"
    installed.parent.mkdir(parents=True)
    installed.write_text("#!/bin/sh\nexit 0\n")  # answers "yes, 3.13" to the version probe
    installed.chmod(0o755)
    assert blender_lines.find_python((3, 13)) == str(installed)
    assert blender_lines.NEWEST_311.interpreter() == Path(blender_lines.sys.executable)  # this environment's bpy


def test_each_line_is_tested_at_both_ends_of_its_manifest_range():
    """blender_version_min is the oldest bpy tested in the line, and the newest lies below blender_version_max."""
    for line in blender_lines.BLENDER_LINES:
        tested = sorted(tuple(map(int, b.bpy.split("."))) for b in blender_lines.TEST_BLENDERS if b.line is line)
        assert tested[0] == tuple(map(int, line.first.split(".")))
        assert tested[-1][:2] == tuple(map(int, line.last.split("."))) and tested[-1] < tuple(map(int, line.end.split(".")))
