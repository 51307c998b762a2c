"""build_addon.py: the extension zip (Blender's own validator, headless install/enable/disable), the wheel
listing, and the legacy zip."""
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import build_addon
from tests.conftest import requires_bpy

WHEEL_NAMES = (
    "pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl",
    "pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl",
    "pyzmq-27.3.0-cp311-cp311-win_amd64.whl",
)


def blender_ext_cli() -> Path:
    """Blender's extension command line (what `blender --command extension validate` runs), found without importing bpy."""
    bpy_dir = Path(importlib.util.find_spec("bpy").submodule_search_locations[0])
    return next(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))


def validate(path: Path) -> None:
    result = subprocess.run([sys.executable, str(blender_ext_cli()), "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and "Success" in result.stdout, result.stdout + result.stderr


@pytest.fixture
def fake_wheels(tmp_path):
    """Wheel files with the names pip downloads (contents do not matter to the build)."""
    directory = tmp_path / "wheels"
    directory.mkdir()
    for name in WHEEL_NAMES:
        with zipfile.ZipFile(directory / name, "w") as archive:
            archive.writestr("zmq/__init__.py", "")
    return directory


@requires_bpy
def test_no_wheels_build_is_a_valid_extension_and_a_legacy_addon(tmp_path):
    assert build_addon.main(["--no-wheels", "--legacy", "--out", str(tmp_path / "dist")]) == 0
    extension = tmp_path / "dist" / "sage_portrait-0.1.0-no-wheels.zip"
    names = set(zipfile.ZipFile(extension).namelist())
    assert {"blender_manifest.toml", "__init__.py", "camera.py", "client.py", "protocol.py", "batch.py", "panel.py"} <= names
    assert not any(n.startswith("wheels/") or "numpy" in n or n.endswith(".pyc") for n in names)
    validate(extension)
    assert "blender_version_max" not in build_addon.tomllib.loads(zipfile.ZipFile(extension).read("blender_manifest.toml").decode())
    legacy = zipfile.ZipFile(tmp_path / "dist" / "sage_portrait-0.1.0-legacy.zip")
    assert "sage_portrait/__init__.py" in legacy.namelist() and "sage_portrait/blender_manifest.toml" not in legacy.namelist()
    assert b"bl_info" in legacy.read("sage_portrait/__init__.py")


@requires_bpy
def test_given_wheels_are_bundled_and_listed_for_every_platform(tmp_path, fake_wheels):
    assert build_addon.main(["--wheels", str(fake_wheels), "--out", str(tmp_path / "dist")]) == 0
    extension = tmp_path / "dist" / "sage_portrait-0.1.0.zip"
    archive = zipfile.ZipFile(extension)
    manifest = build_addon.tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert sorted(manifest["wheels"]) == [f"./wheels/{n}" for n in WHEEL_NAMES]
    assert sorted(manifest["platforms"]) == ["linux-x64", "macos-arm64", "macos-x64", "windows-x64"]
    assert all(w[2:] in archive.namelist() for w in manifest["wheels"])
    # cp311 wheels serve Blender 4.2-5.0 only; blender_version_max is exclusive, and 5.1 runs Python 3.13.
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
    validate(extension)


def test_no_flags_builds_with_the_cached_wheels(tmp_path, fake_wheels):
    """`python build_addon.py` does the common thing: bundle the cached wheels (downloaded only when missing)."""
    assert build_addon.main(["--cache", str(fake_wheels), "--out", str(tmp_path / "dist")]) == 0
    archive = zipfile.ZipFile(tmp_path / "dist" / "sage_portrait-0.1.0.zip")
    for name in WHEEL_NAMES:  # these very files, not fresh downloads
        assert archive.read(f"wheels/{name}") == (fake_wheels / name).read_bytes()
    manifest = build_addon.tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert manifest["blender_version_max"] == "5.1.0"


def test_missing_platform_wheel_fails_with_one_line_and_writes_nothing(tmp_path, fake_wheels, capsys):
    (fake_wheels / WHEEL_NAMES[2]).unlink()
    assert build_addon.main(["--wheels", str(fake_wheels), "--out", str(tmp_path / "dist")]) == 1
    assert "windows-x64" in capsys.readouterr().err
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())


def test_extension_and_legacy_zip_install_enable_and_disable_headless(run_bpy, tmp_path):
    assert build_addon.main(["--no-wheels", "--legacy", "--out", str(tmp_path / "dist")]) == 0
    run_bpy(f"""
        import bpy, addon_utils, sys
        result = bpy.ops.extensions.package_install_files(
            filepath={str(tmp_path / "dist" / "sage_portrait-0.1.0-no-wheels.zip")!r}, repo="user_default", enable_on_install=True)
        assert result == {{"FINISHED"}}, result
        assert "bl_ext.user_default.sage_portrait" in bpy.context.preferences.addons
        assert hasattr(bpy.types.Scene, "sage_portrait") and hasattr(bpy.ops.sage, "generate")
        prefs = bpy.context.preferences.addons["bl_ext.user_default.sage_portrait"].preferences
        assert prefs.timeout == 30.0 and hasattr(prefs, "python_executable")
        from bl_ext.user_default.sage_portrait import batch  # the documented headless entry point imports
        bpy.ops.preferences.addon_disable(module="bl_ext.user_default.sage_portrait")
        assert not hasattr(bpy.types.Scene, "sage_portrait")
        bpy.ops.preferences.addon_install(filepath={str(tmp_path / "dist" / "sage_portrait-0.1.0-legacy.zip")!r})
        addon_utils.enable("sage_portrait", default_set=True)
        assert hasattr(bpy.types.Scene, "sage_portrait")
        addon_utils.disable("sage_portrait", default_set=True)
        assert not hasattr(bpy.types.Scene, "sage_portrait")
        print("OK")
    """)


def test_zips_and_their_entries_get_normal_modes_and_builds_distinct_names(tmp_path, fake_wheels):
    """Main: the zip and every entry in it were 0600, and --no-wheels overwrote the full package."""
    dist = tmp_path / "dist"
    assert build_addon.main(["--wheels", str(fake_wheels), "--out", str(dist)]) == 0
    assert build_addon.main(["--no-wheels", "--legacy", "--out", str(dist)]) == 0
    built = sorted(p.name for p in dist.iterdir())
    assert built == ["sage_portrait-0.1.0-legacy.zip", "sage_portrait-0.1.0-no-wheels.zip", "sage_portrait-0.1.0.zip"]
    assert any(n.startswith("wheels/") for n in zipfile.ZipFile(dist / "sage_portrait-0.1.0.zip").namelist())
    for name in built:
        assert (dist / name).stat().st_mode & 0o777 == build_addon.default_mode()
        for entry in zipfile.ZipFile(dist / name).infolist():
            assert entry.external_attr >> 16 == 0o100644, (name, entry.filename, oct(entry.external_attr >> 16))
