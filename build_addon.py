"""Build the SAGE Portrait Blender add-on into dist/: one extension zip per Blender line (the Blender releases
that embed one Python), each with pyzmq wheels for that Python.

    python build_addon.py                       # the common thing: pyzmq wheels from build/wheels (pip downloads
                                                # them the first time), then build every line's zip
    python build_addon.py --download            # download the wheels again, then build
    python build_addon.py --wheels DIR          # use pre-downloaded wheels (every line's)
    python build_addon.py --no-wheels           # no bundled pyzmq (Blender's Python must have it)

Writes dist/sage_portrait-VERSION-blender-4.2-5.0.zip (Python 3.11, cp311 wheels) and
dist/sage_portrait-VERSION-blender-5.1-5.3.zip (Python 3.13, abi3 wheels): Blender refuses one zip holding both
kinds, so each line's manifest carries that line's `blender_version_min`/`blender_version_max` and wheels for Linux
(x64, arm64), Windows (x64, arm64) and macOS (arm64, x64). With --no-wheels: dist/sage_portrait-VERSION-no-wheels.zip
for any Blender 4.2+; with --legacy also dist/sage_portrait-VERSION-legacy.zip, an add-on zip for
Preferences > Add-ons > Install from Disk (bl_info; pyzmq not bundled). numpy is never shipped: Blender has it.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from blender_addon.files import default_mode

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "blender_addon"
MANIFEST = "blender_manifest.toml"
PYZMQ_VERSION = "27.3.0"


@dataclass(frozen=True)
class BlenderLine:
    """Blender releases that embed one Python version, so one set of pyzmq wheels serves them all.

    first: the oldest release, tested (`blender_version_min`); last: the newest tested release (its major.minor,
    for the zip's name); end: `blender_version_max`, exclusive, the first release the tests do not cover;
    python: the embedded CPython (major, minor)."""

    first: str
    last: str
    end: str
    python: tuple[int, int]

    @property
    def name(self) -> str:
        """What a user matches against their Blender: "blender-4.2-5.0"."""
        return f"blender-{self.first.rsplit('.', 1)[0]}-{self.last}"

    def serves(self, wheel: Path) -> bool:
        """Whether the wheel loads in this line's Python: its own CPython tag, or the stable ABI (abi3) of a
        CPython no newer than it."""
        python, abi, _ = wheel_tags(wheel)
        versions = [tuple(int(part) for part in (tag[2], tag[3:])) for tag in python.split(".")
                    if tag.startswith("cp") and tag[2:].isdigit() and len(tag) > 3]
        if abi == "abi3":
            return any(v <= self.python for v in versions)
        return self.python in versions


# Each line's zip is tested in pip `bpy` of its `first` and `last` releases (tests/addon/blender_lines.py); `end`
# stops where the tests stop, since a later Blender may embed another Python.
BLENDER_LINES = (
    BlenderLine(first="4.2.0", last="5.0", end="5.1.0", python=(3, 11)),
    BlenderLine(first="5.1.0", last="5.3", end="5.4.0", python=(3, 13)),
)
# pip --platform per download (the macOS queries answer with one universal2 wheel that serves both Mac platforms).
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "win_arm64",
                 "macosx_11_0_arm64", "macosx_10_15_x86_64")
# Blender platform -> a test on the wheel's platform tag (Blender's own names, as its `platforms` field takes them).
BLENDER_PLATFORMS = {
    "linux-x64": lambda tag: "linux" in tag and tag.endswith("x86_64"),
    "linux-arm64": lambda tag: "linux" in tag and tag.endswith("aarch64"),
    "windows-x64": lambda tag: tag == "win_amd64",
    "windows-arm64": lambda tag: tag == "win_arm64",
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


def select_wheels(directory: Path, line: BlenderLine) -> dict[Path, list[str]]:
    """pyzmq wheels in `directory` that load in the line's Python -> the Blender platforms each serves.
    Raises BuildError naming the platforms no wheel serves."""
    chosen: dict[Path, list[str]] = {}
    for wheel in sorted(directory.glob("pyzmq-*.whl")):
        if not line.serves(wheel):
            continue
        platform_tags = wheel_tags(wheel)[2].split(".")
        served = [name for name, test in BLENDER_PLATFORMS.items() if any(test(t) for t in platform_tags)]
        if served:
            chosen[wheel] = served
    missing = sorted(set(BLENDER_PLATFORMS) - {p for served in chosen.values() for p in served})
    if missing:
        raise BuildError(f"no pyzmq wheel for Python {'.'.join(map(str, line.python))} ({line.name}) in {directory} "
                         f"for: {', '.join(missing)} (try --download)")
    return chosen


def has_all_wheels(directory: Path) -> bool:
    try:
        for line in BLENDER_LINES:
            select_wheels(directory, line)
    except BuildError:
        return False
    return True


def download_wheels(directory: Path, version: str = PYZMQ_VERSION) -> None:
    """Every line's pyzmq wheels for every platform into `directory` (pip skips files already there). The pip runs
    overlap: each mostly waits on the index."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(line, platform) for line in BLENDER_LINES for platform in PIP_PLATFORMS]

    def download(job: tuple[BlenderLine, str]) -> subprocess.CompletedProcess:
        line, platform = job
        return subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               "--platform", platform, "--python-version", ".".join(map(str, line.python)),
                               f"pyzmq=={version}", "--dest", str(directory)], capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for (line, platform), result in zip(jobs, pool.map(download, jobs)):
            if result.returncode != 0:
                raise BuildError(f"pip could not download pyzmq for {platform} ({line.name}): "
                                 f"{result.stderr.strip().splitlines()[-1:]}")


def manifest_text(line: BlenderLine | None, wheels: dict[Path, list[str]]) -> str:
    """The source manifest with the line's range, `platforms` and `wheels` added as top-level keys (before the
    first table); without a line (no wheels) the source's own: any Blender from its `blender_version_min`."""
    text = (SOURCE / MANIFEST).read_text(encoding="utf-8")
    if line is None:
        return text
    platforms = sorted({p for served in wheels.values() for p in served})
    extra = (f'blender_version_max = "{line.end}"\n'
             f"platforms = [{', '.join(f'{chr(34)}{p}{chr(34)}' for p in platforms)}]\n"
             f"wheels = [\n" + "".join(f'  "./wheels/{w.name}",\n' for w in wheels) + "]\n\n")
    text = re.sub(r'^blender_version_min = .*$', f'blender_version_min = "{line.first}"', text, count=1, flags=re.MULTILINE)
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


def extension_members(text: str, wheels: dict[Path, list[str]]) -> list[tuple[str, bytes | Path]]:
    members: list[tuple[str, bytes | Path]] = [(MANIFEST, text.encode("utf-8"))]
    members += [(p.name, p) for p in source_files()]
    return members + [(f"wheels/{w.name}", w) for w in wheels]


def build(out: Path, wheel_dir: Path | None, legacy: bool = False) -> list[Path]:
    """Write the extension zips into `out` and return their paths: one per Blender line with `wheel_dir`'s pyzmq
    wheels, or one without wheels when `wheel_dir` is None; with `legacy` also the legacy add-on zip.
    Raises BuildError (nothing written) when a line lacks a platform's wheel or the manifest is broken."""
    if wheel_dir is None:
        packages = [("no-wheels", manifest_text(None, {}), {})]
    else:  # every line's wheels are checked before any zip is written
        packages = []
        for line in BLENDER_LINES:
            wheels = select_wheels(wheel_dir, line)
            packages.append((line.name, manifest_text(line, wheels), wheels))
    version = [check_manifest(text)["version"] for _, text, _ in packages][0]  # every manifest checked first
    built = []
    for suffix, text, wheels in packages:
        built.append(out / f"sage_portrait-{version}-{suffix}.zip")
        write_zip(built[-1], extension_members(text, wheels))
    if legacy:
        built.append(out / f"sage_portrait-{version}-legacy.zip")
        write_zip(built[-1], [(f"sage_portrait/{p.name}", p) for p in source_files()])
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
