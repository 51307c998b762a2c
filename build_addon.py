"""Build the SAGE Portrait Blender add-on into dist/.

    python build_addon.py                       # the common thing: pyzmq wheels from build/wheels (pip downloads
                                                # them the first time), then build
    python build_addon.py --download            # download the wheels again, then build
    python build_addon.py --wheels DIR          # use pre-downloaded wheels
    python build_addon.py --no-wheels           # no bundled pyzmq (Blender's Python must have it)

Writes dist/sage_portrait-VERSION.zip (with --no-wheels dist/sage_portrait-VERSION-no-wheels.zip), a Blender 4.2+ extension (blender_manifest.toml at the root, pyzmq
wheels for Blender's Python listed in its `wheels`), and with --legacy also dist/sage_portrait-VERSION-legacy.zip,
an add-on zip for Preferences > Add-ons > Install from Disk (bl_info; pyzmq not bundled). numpy is never
shipped: Blender has it. With wheels the manifest's `blender_version_max` stops at the first Blender whose
Python the cp311 wheels cannot serve (5.1, Python 3.13).
"""
from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

from blender_addon.files import default_mode

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "blender_addon"
MANIFEST = "blender_manifest.toml"
PYZMQ_VERSION = "27.3.0"
PYTHON_TAG = "cp311"  # Blender 4.2-5.0's Python 3.11
BLENDER_VERSION_MAX = "5.1.0"  # exclusive: Blender 5.1+ runs Python 3.13, which cp311 wheels cannot serve
# pip --platform per download; the macOS query answers with a universal2 wheel that serves both Mac platforms.
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "win_amd64", "macosx_11_0_arm64")
# Blender platform -> a test on the wheel's platform tag.
BLENDER_PLATFORMS = {
    "linux-x64": lambda tag: "manylinux" in tag and tag.endswith("x86_64"),
    "windows-x64": lambda tag: tag == "win_amd64",
    "macos-arm64": lambda tag: tag.startswith("macosx") and (tag.endswith("arm64") or tag.endswith("universal2")),
    "macos-x64": lambda tag: tag.startswith("macosx") and (tag.endswith("x86_64") or tag.endswith("universal2")),
}
REQUIRED_FIELDS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type", "blender_version_min", "license")


class BuildError(RuntimeError):
    pass


def source_files() -> list[Path]:
    return sorted(p for p in SOURCE.glob("*.py"))


def wheel_tags(path: Path) -> tuple[str, str, str]:
    """(python tag, abi tag, platform tag) from a wheel's file name."""
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise BuildError(f"not a wheel file name: {path.name}")
    return parts[-3], parts[-2], parts[-1]


def select_wheels(directory: Path) -> dict[Path, list[str]]:
    """pyzmq wheels usable by Blender's Python -> the Blender platforms each serves; every platform covered."""
    chosen: dict[Path, list[str]] = {}
    for wheel in sorted(directory.glob("pyzmq-*.whl")):
        python, abi, platform_tags = wheel_tags(wheel)
        if PYTHON_TAG not in python.split(".") and abi != "abi3":
            continue
        served = [name for name, test in BLENDER_PLATFORMS.items() if any(test(t) for t in platform_tags.split("."))]
        if served:
            chosen[wheel] = served
    missing = sorted(set(BLENDER_PLATFORMS) - {p for served in chosen.values() for p in served})
    if missing:
        raise BuildError(f"no {PYTHON_TAG} pyzmq wheel in {directory} for: {', '.join(missing)} (try --download)")
    return chosen


def has_all_wheels(directory: Path) -> bool:
    try:
        select_wheels(directory)
    except BuildError:
        return False
    return True


def download_wheels(directory: Path, version: str = PYZMQ_VERSION) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for platform in PIP_PLATFORMS:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--platform", platform, "--python-version", "3.11", f"pyzmq=={version}", "--dest", str(directory)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"pip could not download pyzmq for {platform}: {result.stderr.strip().splitlines()[-1:]}")


def manifest_text(wheels: dict[Path, list[str]]) -> str:
    """The source manifest with `platforms` and `wheels` added as top-level keys (before the first table)."""
    text = (SOURCE / MANIFEST).read_text(encoding="utf-8")
    extra = ""
    if wheels:
        platforms = sorted({p for served in wheels.values() for p in served})
        extra = (f'blender_version_max = "{BLENDER_VERSION_MAX}"\n'
                 f"platforms = [{', '.join(repr(p).replace(chr(39), chr(34)) for p in platforms)}]\n"
                 f"wheels = [\n" + "".join(f'  "./wheels/{w.name}",\n' for w in wheels) + "]\n\n")
    first_table = re.search(r"^\[", text, flags=re.MULTILINE)
    cut = first_table.start() if first_table else len(text)
    return text[:cut] + extra + text[cut:]


def check_manifest(text: str) -> dict:
    manifest = tomllib.loads(text)
    missing = [f for f in REQUIRED_FIELDS if f not in manifest]
    if missing:
        raise BuildError(f"{MANIFEST} lacks {', '.join(missing)}")
    if manifest["id"] != "sage_portrait" or manifest["type"] != "add-on":
        raise BuildError(f"{MANIFEST} must describe the add-on 'sage_portrait'")
    if any("numpy" in w for w in manifest.get("wheels", [])):
        raise BuildError("numpy must not be shipped: Blender has it")
    return manifest


ENTRY_MODE = 0o644  # what unzip gives each entry (writestr's default is 0600: files only their owner could read)


def write_zip(path: Path, members: list[tuple[str, bytes | Path]]) -> None:
    """Atomically: a temp file next to the target, renamed when complete; the zip gets the permissions a
    plain open() gives (not mkstemp's 0600), its entries rw-r--r--."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".sage-", suffix=".zip.part")
    os.close(handle)
    try:
        with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in members:
                entry = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
                entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, (stat.S_IFREG | ENTRY_MODE) << 16
                archive.writestr(entry, content if isinstance(content, bytes) else content.read_bytes())
        os.chmod(temp, default_mode())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def build(out: Path, wheel_dir: Path | None, legacy: bool = False) -> list[Path]:
    wheels = select_wheels(wheel_dir) if wheel_dir is not None else {}
    text = manifest_text(wheels)
    manifest = check_manifest(text)
    version = manifest["version"]
    # A build without pyzmq serves only a Blender whose Python has it: its own name, never over the full package.
    extension = out / f"sage_portrait-{version}{'' if wheels else '-no-wheels'}.zip"
    members: list[tuple[str, bytes | Path]] = [(MANIFEST, text.encode("utf-8"))]
    members += [(p.name, p) for p in source_files()]
    members += [(f"wheels/{w.name}", w) for w in wheels]
    write_zip(extension, members)
    built = [extension]
    if legacy:
        legacy_zip = out / f"sage_portrait-{version}-legacy.zip"
        write_zip(legacy_zip, [(f"sage_portrait/{p.name}", p) for p in source_files()])
        built.append(legacy_zip)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the SAGE Portrait Blender add-on.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--wheels", type=Path, metavar="DIR", help="folder of pre-downloaded pyzmq wheels")
    group.add_argument("--download", action="store_true", help="download pyzmq wheels with pip into --cache (default: "
                                                               "only when the cache lacks a platform's wheel)")
    group.add_argument("--no-wheels", action="store_true", help="bundle no pyzmq")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "wheels", help="download folder (default build/wheels)")
    parser.add_argument("--pyzmq-version", default=PYZMQ_VERSION)
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--legacy", action="store_true", help="also build a legacy add-on zip (bl_info)")
    args = parser.parse_args(argv)
    try:
        if args.download or (not args.wheels and not args.no_wheels and not has_all_wheels(args.cache)):
            download_wheels(args.cache, args.pyzmq_version)
        wheel_dir = None if args.no_wheels else args.wheels or args.cache
        for path in build(args.out, wheel_dir, args.legacy):
            print(path)
    except (BuildError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
