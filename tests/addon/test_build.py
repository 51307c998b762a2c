"""build_addon.py: one extension zip per Blender line (Blender's own validator, headless install/enable/disable,
the bundled pyzmq driving the operators in each line's bpy), the wheel listing, and the legacy zip."""
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import build_addon
from tests.conftest import requires_bpy

# What pip downloads for pyzmq 27.3.0 (build_addon.PIP_PLATFORMS): cp311 wheels and cp312-abi3 ones.
PLATFORM_TAGS = ("macosx_10_15_universal2", "manylinux_2_26_aarch64.manylinux_2_28_aarch64",
                 "manylinux_2_26_x86_64.manylinux_2_28_x86_64", "win_amd64", "win_arm64")
EXTENSION = "bl_ext.user_default.sage_portrait"
WHEEL_NAMES = {line: tuple(f"pyzmq-27.3.0-{tags}-{platform}.whl" for platform in PLATFORM_TAGS)
               for line, tags in zip(build_addon.BLENDER_LINES, ("cp311-cp311", "cp312-abi3"))}
EVERY_PLATFORM = ["linux-arm64", "linux-x64", "macos-arm64", "macos-x64", "windows-arm64", "windows-x64"]


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
    for name in sum(WHEEL_NAMES.values(), ()):
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


def line_zip(dist: Path, line: build_addon.BlenderLine) -> zipfile.ZipFile:
    return zipfile.ZipFile(dist / f"sage_portrait-0.1.0-{line.name}.zip")


def zip_manifest(archive: zipfile.ZipFile) -> dict:
    return build_addon.tomllib.loads(archive.read("blender_manifest.toml").decode())


@requires_bpy
def test_one_build_makes_a_zip_per_blender_line_with_its_wheels_for_every_platform(tmp_path, fake_wheels):
    """Main: one zip with cp311 wheels capped at Blender 5.1; Blender 5.1-5.3 (Python 3.13) had none to install."""
    dist = tmp_path / "dist"
    assert build_addon.main(["--wheels", str(fake_wheels), "--out", str(dist)]) == 0
    assert sorted(p.name for p in dist.iterdir()) == ["sage_portrait-0.1.0-blender-4.2-5.0.zip",
                                                      "sage_portrait-0.1.0-blender-5.1-5.3.zip"]
    ranges = []
    for line in build_addon.BLENDER_LINES:
        archive = line_zip(dist, line)
        manifest = zip_manifest(archive)
        assert sorted(manifest["wheels"]) == [f"./wheels/{n}" for n in sorted(WHEEL_NAMES[line])]
        assert sorted(manifest["platforms"]) == EVERY_PLATFORM
        assert all(w[2:] in archive.namelist() for w in manifest["wheels"])
        ranges.append((manifest["blender_version_min"], manifest["blender_version_max"]))
        validate(dist / f"sage_portrait-0.1.0-{line.name}.zip")
    # blender_version_max is exclusive: 4.2-5.0 run Python 3.11, 5.1-5.3 Python 3.13, and the tests stop at 5.3.
    assert ranges == [("4.2.0", "5.1.0"), ("5.1.0", "5.4.0")]


@pytest.mark.parametrize("wheel, python_3_11, python_3_13", [
    ("pyzmq-27.3.0-cp311-cp311-win_amd64.whl", True, False),
    ("pyzmq-27.3.0-cp312-abi3-win_amd64.whl", False, True),  # the stable ABI of 3.12 and later
    ("pyzmq-27.3.0-cp313-cp313-win_amd64.whl", False, True),
    ("pyzmq-27.3.0-cp314-abi3-win_amd64.whl", False, False),
    ("pyzmq-27.3.0-cp38-abi3-win_amd64.whl", True, True),
    ("pyzmq-27.3.0-pp311-pypy311_pp73-win_amd64.whl", False, False),
    ("pyzmq-27.3.0-cp3-none-win_amd64.whl", False, False),
])
def test_each_line_takes_only_wheels_its_python_loads(wheel, python_3_11, python_3_13):
    old, new = build_addon.BLENDER_LINES
    assert (old.serves(Path(wheel)), new.serves(Path(wheel))) == (python_3_11, python_3_13)


def test_no_flags_builds_with_the_cached_wheels(tmp_path, fake_wheels):
    """`python build_addon.py` does the common thing: bundle the cached wheels (downloaded only when missing)."""
    assert build_addon.main(["--cache", str(fake_wheels), "--out", str(tmp_path / "dist")]) == 0
    for line in build_addon.BLENDER_LINES:
        archive = line_zip(tmp_path / "dist", line)
        for name in WHEEL_NAMES[line]:  # these very files, not fresh downloads
            assert archive.read(f"wheels/{name}") == (fake_wheels / name).read_bytes()
        assert zip_manifest(archive)["blender_version_max"] == line.end


@pytest.mark.parametrize("line", build_addon.BLENDER_LINES, ids=lambda line: line.name)
def test_missing_platform_wheel_fails_with_one_line_and_writes_nothing(tmp_path, fake_wheels, capsys, line):
    (fake_wheels / next(n for n in WHEEL_NAMES[line] if n.endswith("win_arm64.whl"))).unlink()
    assert build_addon.main(["--wheels", str(fake_wheels), "--out", str(tmp_path / "dist")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "windows-arm64" in err and line.name in err, err
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
    assert built == ["sage_portrait-0.1.0-blender-4.2-5.0.zip", "sage_portrait-0.1.0-blender-5.1-5.3.zip",
                     "sage_portrait-0.1.0-legacy.zip", "sage_portrait-0.1.0-no-wheels.zip"]
    for line in build_addon.BLENDER_LINES:
        assert any(n.startswith("wheels/") for n in line_zip(dist, line).namelist())
    for name in built:
        assert (dist / name).stat().st_mode & 0o777 == build_addon.default_mode()
        for entry in zipfile.ZipFile(dist / name).infolist():
            assert entry.external_attr >> 16 == 0o100644, (name, entry.filename, oct(entry.external_attr >> 16))


@pytest.mark.every_blender  # each line's oldest and newest bpy: the manifests' ranges are what this covers
@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)  # the backend's modes are not this test's subject
def test_each_lines_zip_installs_in_its_blender_and_its_own_pyzmq_drives_the_operators(
        run_bpy, blender, blender_line, address, tmp_path):
    """The zip installed the way Blender does, in the line's Python without pyzmq (as Blender ships it): the
    bundled wheel is what imports, and Generate, Bake Turntable and Import Mesh work against the real backend.
    The other line's zip is refused, naming the version that rules it out (Main: no zip installed on 5.1-5.3)."""
    dist = tmp_path / "dist"
    assert build_addon.main(["--out", str(dist)]) == 0  # real wheels: build/wheels, downloaded the first time
    (other,) = [line for line in build_addon.BLENDER_LINES if line is not blender_line]
    zips = {line: str(dist / f"sage_portrait-0.1.0-{line.name}.zip") for line in build_addon.BLENDER_LINES}
    out = run_bpy(f"""
        import importlib.util, os
        import bpy, scene_setup
        assert importlib.util.find_spec("zmq") is None
        assert ".".join(map(str, bpy.app.version)) == {blender.bpy!r}, bpy.app.version_string
        bpy.ops.extensions.package_install_files(filepath={zips[other]!r}, repo="user_default", enable_on_install=True)
        assert {EXTENSION!r} not in bpy.context.preferences.addons  # refused (the operator still says FINISHED)
        result = bpy.ops.extensions.package_install_files(filepath={zips[blender_line]!r}, repo="user_default",
                                                          enable_on_install=True)
        assert result == {{"FINISHED"}} and {EXTENSION!r} in bpy.context.preferences.addons, result
        import zmq
        assert zmq.__file__.startswith(os.environ["BLENDER_USER_RESOURCES"]), zmq.__file__  # the bundled wheel
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64, register=False)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        assert bpy.ops.sage.generate() == {{"FINISHED"}} and tuple(settings.drawing_image.size) == (64, 64)
        settings.turntable_frames = 3
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}
        settings.mesh_grid = 32
        assert bpy.ops.sage.import_mesh() == {{"FINISHED"}} and bpy.data.objects["SAGE Portrait Mesh"].data.vertices
        print("OK", bpy.app.version_string)
    """, without_zmq=True)
    (refusal,) = [line for line in out.splitlines() if line.startswith("ERROR sage_portrait: This Blender version")]
    assert f"version ({other.first})" in refusal or f"version ({other.end})" in refusal, refusal
