"""The add-on's writers: a PNG Blender cut short on a full disk is caught, never renamed over the target,
never left behind; files get the permissions a plain open() gives (not mkstemp's 0600)."""
from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from blender_addon import files

from conftest import HERE, PREAMBLE, REPO
from tests.conftest import requires_bpy


def _png(size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("cut", [0, 8, 40, 1000, -13, -1])
def test_a_png_cut_anywhere_is_refused(tmp_path, cut: int) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(_png()[:cut])
    with pytest.raises(ValueError):
        files.check_png(str(path))


def test_a_whole_png_passes_and_bytes_get_normal_permissions(tmp_path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(_png())
    files.check_png(str(path))
    files.write_bytes(str(tmp_path / "mesh.ply"), b"ply\n")
    assert (tmp_path / "mesh.ply").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.ply", "x.png"]


def test_a_destination_that_refuses_is_named_as_chosen_never_by_its_temporary_file(unwritable_target) -> None:
    """Fresh-user check: exporting into a read-only folder named the hidden `.head.obj.x.partial`. The export's
    check before the mesh's minutes of work (check_writable) and the write itself (an OBJ and its .mtl) both
    name the file the artist chose."""
    target = str(unwritable_target)
    for attempt in (lambda: files.check_writable(target), lambda: files.write_files({target: b"obj", target[:-4] + ".mtl": b"mtl"})):
        with pytest.raises(files.WriteError) as error:
            attempt()
        assert str(error.value).startswith(f"{target}: could not be written (") and ".partial" not in str(error.value)
    folder = os.path.dirname(target)
    assert not (os.path.isdir(folder) and [name for name in os.listdir(folder) if name.endswith(".partial")])


def _small_files() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write (EFBIG), as on a full disk (ENOSPC)
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))


@requires_bpy
@pytest.mark.parametrize("full_disk", [False, True])
def test_the_headless_batch_never_claims_images_it_did_not_write(address, tmp_path, full_disk: bool) -> None:
    """Main: on a full disk Blender's image.save() raised nothing, the cut PNG was renamed over the target and
    the batch said "wrote 4 images" with exit 0; its PNGs were also created 0600."""
    script = PREAMBLE.format(repo=str(REPO), here=str(HERE), stack_after_s=280) + textwrap.dedent(f"""
        import blender_addon
        blender_addon.register()
        from blender_addon import batch
        batch.main(["--out", "out", "--address", {address!r}, "--demo-scene", "2", "--resolution", "128", "--timeout", "120"])
    """)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, preexec_fn=_small_files if full_disk else None)
    names = sorted(os.listdir(tmp_path / "out"))
    assert not [n for n in names if n.startswith(".")], names  # no temporary file stays behind
    for name in names:
        files.check_png(str(tmp_path / "out" / name))  # whatever is there is whole
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o666 & ~_umask()
    if full_disk:
        failure = [line for line in result.stderr.splitlines() if line.startswith("SAGE batch failed: ")]
        assert result.returncode == 1 and "wrote" not in result.stdout, (result.stdout[-2000:], result.stderr[-3000:])
        assert len(failure) == 1 and "not written whole" in failure[0] and "disk full" in failure[0]
    else:
        assert result.returncode == 0 and "wrote 6 images" in result.stdout and len(names) == 6, result.stderr[-3000:]


@pytest.mark.parametrize("style, seed, frame", [("pencil", 7, 1), ("line", 0, 0), ("my style", 2**63 - 1, 12345)])
def test_frame_file_names_agree_with_the_backend(style: str, seed: int, frame: int) -> None:
    """`render`, the demo and the Blender batch name the same frame's files the same way (docs/files.md)."""
    from sage_backend.frames import FRAME_KINDS, frame_file_name

    assert files.FRAME_KINDS == FRAME_KINDS
    for kind in FRAME_KINDS:
        assert files.frame_file_name(style, seed, frame, kind) == frame_file_name(style, seed, frame, kind)
    for bad in (("pencil", 7, -1, "drawing"), ("pencil", 7, 1, "mask")):
        with pytest.raises(ValueError):
            files.frame_file_name(*bad)
        with pytest.raises(ValueError):
            frame_file_name(*bad)


def test_raw_label_png_holds_the_class_ids(tmp_path) -> None:
    """The batch's `*_labels.png`: the ids as they are (a viewer shows them near-black), a whole PNG."""
    labels = np.random.default_rng(1).integers(0, 19, (5, 7), dtype=np.uint8)
    path = str(tmp_path / "x_labels.png")
    files.write_bytes(path, files.png_grey8([row.tobytes() for row in labels], labels.shape[1]))
    files.check_png(path)
    with Image.open(path) as image:
        assert image.mode == "L" and np.array_equal(np.array(image), labels)


def test_a_write_killed_outright_leaves_a_temporary_file_the_next_writer_removes(tmp_path) -> None:
    """Sibling of the backend's (a resumed training run): a `blender -b` render killed by its farm mid-frame left
    `.frame.png.x.partial` beside the frames for good. Now the name holds the writer's pid, and the next process
    writing into that folder removes it once that process is gone; a live writer's file is kept."""
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from blender_addon import files
        files.atomic_write({str(tmp_path / "frame.png")!r}, lambda temp: (print(temp, flush=True), time.sleep(60)), files.check_png)
        """)], stdout=subprocess.PIPE, text=True)
    temp = writer.stdout.readline().strip()
    writer.kill()
    writer.wait(30)
    live = tmp_path / f".other.png.{os.getpid()}.abc123.partial"
    live.write_bytes(b"being written")
    assert os.path.basename(temp).startswith(f".frame.png.{writer.pid}.") and os.path.exists(temp)
    files.write_bytes(str(tmp_path / "next.ply"), b"ply\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "next.ply"]
