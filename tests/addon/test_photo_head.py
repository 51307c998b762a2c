"""A photo head in Blender, against the real backend (tiny styles): Open Inversion... of a `.sage` file, From Photo...
(the backend's `invert`), every request sending that head, its keeping in the .blend, and bad input in one line
with the previous head and drawing untouched."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_addon import heads, protocol

HELD_OUT_FACE = Path(__file__).parents[1] / "backend" / "data" / "heldout_face.png"  # a head the models never saw


@pytest.fixture(scope="module")
def pencil_head(tiny_checkpoint_dir, tmp_path_factory) -> Path:
    """A .sage file fitted (3 steps) to the tiny 'pencil' style by `sage-backend invert`'s own path; the tiny 'line'
    style has other weights, so it is a file fitted to another model there."""
    from sage_backend.checkpoint import load_generator
    from sage_backend.inversion import InversionSettings, invert_photo
    from sage_backend.inverted import save_inverted

    generator = load_generator(tiny_checkpoint_dir / "pencil.safetensors").generator
    photo = np.asarray(Image.open(HELD_OUT_FACE).convert("RGB"))
    path = tmp_path_factory.mktemp("heads") / "me.sage"
    save_inverted(path, invert_photo(generator, photo, InversionSettings(steps=3), name="face.png"))
    return path


def test_a_sage_file_is_read_without_torch(pencil_head) -> None:
    head = heads.read_file(str(pencil_head))
    assert head.photo == "face.png" and head.stem == "face" and head.label.startswith("face.png (") and head.label.endswith(" dB)")
    assert heads.from_text(heads.to_text(head)) == head
    for data in (b"", b"\x08\0\0\0\0\0\0\0{}", b"hello, this is a text file", b"\xff" * 9, b"\x00\x00\x10\0\0\0\0\0" + b"[" * 100_000):
        with pytest.raises(ValueError, match="not a .sage inversion"):
            heads.read_head(data)
    with pytest.raises(ValueError, match="damaged"):
        heads.from_text("not base64!")
    missing = pencil_head.parent / "nope.sage"
    for path, why in ((missing, "No such file or directory"), (pencil_head.parent, "it is a folder")):
        with pytest.raises(ValueError, match=rf"^{path}: could not be read \({why}\)$"):  # not a bare errno line
            heads.read_file(str(path))
    frames = protocol.encode_request("r1", "generate", {"style": "line", "inversion": protocol.Upload(head.data)})
    header = json.loads(frames[1])  # what the backend reads: inversion true, the file's bytes the one blob
    assert header["inversion"] is True and header["blobs"][0]["name"] == "inversion" and frames[2:] == [head.data]
    from sage_backend.files import check_file_name

    for path, name in (("/a/" + "x" * 80 + ".png", "x" * 60 + ".png"), ("/a/face:1?.jpg", "face_1_.jpg"), ("/a/.hidden.png", "hidden.png"),
                       ("/a/face.png", "face.png"), ("/a/...", "photo")):
        assert heads.photo_name(path) == check_file_name(name, "name"), path


@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_an_opened_inversion_is_drawn_by_every_request_and_kept_in_the_blend(run_bpy, address, pencil_head, tmp_path):
    """Open Inversion... (an undo step), Generate, Bake of 3 frames, Import Mesh and the batch draw the photo head;
    a style of another model is refused in one line with nothing lost; saved and reopened in a new process, the
    .blend still draws it, with neither the .sage file nor a backend needed to keep it."""
    blend, sage = tmp_path / "photo_head.blend", tmp_path / "me.sage"
    sage.write_bytes(pencil_head.read_bytes())
    run_bpy(f"""
        import os, bpy, numpy as np, scene_setup
        from blender_addon import batch, portrait, status
        bpy.ops.wm.read_homefile(use_empty=True)  # the undo stack needs the home file's window, headless too
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        settings.style = "pencil"
        pixels = lambda: np.array(settings.drawing_image.pixels[:])
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        seed_drawing = pixels()
        window = bpy.context.window_manager.windows[0]
        view = next(area for area in window.screen.areas if area.type == "VIEW_3D")
        with bpy.context.temp_override(window=window, screen=window.screen, area=view):
            bpy.ops.ed.undo_push(message="seed drawn")
            assert bpy.ops.sage.open_inversion("EXEC_DEFAULT", True, filepath={str(sage)!r}) == {{"FINISHED"}}
            # The camera showed a drawing: the new head is drawn there at once
            assert settings.head == "PHOTO" and status.status() == "SAGE: drew the photo head face.png in style pencil", status.status()
            photo_drawing = pixels()
            assert not np.array_equal(photo_drawing, seed_drawing)
            bpy.ops.ed.undo()
            settings = bpy.context.scene.sage_portrait
            assert settings.head == "SEED" and settings.photo_head == "" and np.array_equal(pixels(), seed_drawing)
            bpy.ops.ed.redo()
            settings = bpy.context.scene.sage_portrait
            assert settings.head == "PHOTO" and portrait.photo_head(settings).photo == "face.png"
            assert np.array_equal(pixels(), photo_drawing)
        scene = bpy.context.scene
        log = []
        bpy.types.SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
        assert any(text.startswith("Head: face.png (") for kind, text in log if kind == "label"), log

        settings.style = "line"  # another model: the backend's one line, the head and the drawing kept
        scene_setup.assert_refused(bpy.ops.sage.generate, "fitted to another model")
        assert settings.head == "PHOTO" and np.array_equal(pixels(), photo_drawing)
        settings.style, settings.part_styles = "pencil", "hair=line"  # a part in that style: the same line
        scene_setup.assert_refused(bpy.ops.sage.generate, "fitted to another model")
        settings.part_styles = ""
        assert bpy.ops.sage.draw_grease_pencil() == {{"FINISHED"}} and np.array_equal(pixels(), photo_drawing)

        settings.turntable_frames = 3
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}} and status.status().startswith("SAGE: baked 3 frames")
        settings.mesh_grid = 32
        assert bpy.ops.sage.import_mesh() == {{"FINISHED"}}
        os.makedirs("frames")  # a frame a killed render was writing (pid 999999999: above every pid_max, never running)
        killed = "frames/.pencil_face_0001_drawing.png.999999999.abc123.partial"
        open(killed, "wb").close()
        written = batch.render_animation(scene, "frames", {address!r}, 60.0)
        assert not os.path.exists(killed)
        assert sorted(os.path.basename(p) for p in written)[:3] == ["pencil_face_0001_drawing.png", "pencil_face_0001_labels.png",
                                                                    "pencil_face_0001_semantic.png"], written
        np.save("photo_drawing.npy", photo_drawing)
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        print("OK")
    """)
    sage.unlink()  # the .blend keeps the head itself
    run_bpy(f"""
        import bpy, numpy as np, scene_setup
        import blender_addon
        from blender_addon import portrait
        blender_addon.register()
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        settings = bpy.context.scene.sage_portrait
        assert settings.head == "PHOTO" and portrait.photo_head(settings).label.startswith("face.png (")
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        settings.style = "pencil"
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        assert np.array_equal(np.array(settings.drawing_image.pixels[:]), np.load("photo_drawing.npy"))
        print("OK")
    """)


@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_from_photo_shows_progress_then_a_bake_and_a_reopened_blend_draw_the_head(run_bpy, address, tmp_path):
    """A synthetic photo in (the backend's invert on the tiny 'line' style, 50 steps), its progress in the status
    line and the panel, a Bake of 3 frames of the head, and a saved and reopened .blend that still draws it."""
    photo, blend = tmp_path / "face.png", tmp_path / "from_photo.blend"
    photo.write_bytes(HELD_OUT_FACE.read_bytes())
    run_bpy(f"""
        import bpy, numpy as np, scene_setup
        from blender_addon import portrait, status
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        settings.style = "line"
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        seed_drawing = np.array(settings.drawing_image.pixels[:])
        lines, panels = [], []
        shown = status.set_status

        def watch(text):  # every status line, and the panel drawn at each
            lines.append(text)
            log = []
            bpy.types.SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
            panels.extend(entry for entry in log if entry[0] == "progress")
            shown(text)

        status.set_status = watch
        assert bpy.ops.sage.from_photo(filepath={str(photo)!r}, steps=50) == {{"FINISHED"}}, lines[-1]
        status.set_status = shown
        # The status line and the panel's progress bar while it fits (the fraction once the backend sends one, after
        # a second: the cancel test below waits for it; this short fit may end before)
        assert any(line.startswith("SAGE: fitting a head to face.png: ") for line in lines), lines
        assert any(text.startswith(("fitting, ", "fit ")) and text.endswith(" s") for _, text in panels), panels
        head = portrait.photo_head(settings)
        assert settings.head == "PHOTO" and head.photo == "face.png" and head.fit_psnr > 0, lines[-1]
        assert lines[-1] == "SAGE: drew the photo head face.png in style line", lines[-3:]  # drawn at once, as shown before
        assert not np.array_equal(np.array(settings.drawing_image.pixels[:]), seed_drawing)
        settings.turntable_frames = 3
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}} and status.status().startswith("SAGE: baked 3 frames")
        drawing = np.array(settings.drawing_image.pixels[:])
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        settings = bpy.context.scene.sage_portrait
        assert settings.head == "PHOTO" and portrait.photo_head(settings) == head
        settings.style = "line"
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        assert np.array_equal(np.array(settings.drawing_image.pixels[:]), drawing)
        print("OK")
    """)


@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_a_cancelled_fit_and_bad_files_are_one_line_and_keep_the_previous_head(run_bpy, address, pencil_head, tmp_path):
    """Open Inversion... of a file fitted to another model, of a text file and of no file; Cancel mid-way through a
    fit (after progress); a text file as the photo and a photo without a head: each one line, the head and drawing
    from before untouched, and the backend goes on serving."""
    photo, text, blank, notes = tmp_path / "face.png", tmp_path / "notes.png", tmp_path / "blank.png", tmp_path / "notes.sage"
    photo.write_bytes(HELD_OUT_FACE.read_bytes())
    text.write_text("not a photo\n")
    notes.write_text("not a head\n")
    Image.new("RGB", (128, 128), (200, 200, 200)).save(blank)
    run_bpy(f"""
        import time
        import bpy, numpy as np, scene_setup
        from blender_addon import portrait, session, status
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        settings.style, settings.seed = "line", 5
        for path, message in (({str(pencil_head)!r}, "fitted to another model"), ({str(notes)!r}, "notes.sage: not a .sage inversion"),
                              ("/nonexistent/me.sage", "No such file")):
            scene_setup.assert_refused(lambda: bpy.ops.sage.open_inversion(filepath=path), message)
            assert len(status.status().splitlines()) == 1 and message in status.status(), status.status()
            assert settings.head == "SEED" and settings.photo_head == "" and settings.seed == 5
        settings.style = "pencil"
        assert bpy.ops.sage.open_inversion(filepath={str(pencil_head)!r}) == {{"FINISHED"}}
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        kept, drawing = settings.photo_head, np.array(settings.drawing_image.pixels[:])

        errors = []
        job = portrait.start_invert(scene, {str(photo)!r}, 1000, lambda head, header: errors.append("done"), errors.append, 30.0)
        state, deadline = session.get(), time.monotonic() + 120
        while job.fraction is None and not job.done and time.monotonic() < deadline:
            state.poll(0.05)
        assert job.fraction is not None and not job.done, (job, errors)
        state.poll(0.0)  # the status line says how far
        assert status.status().startswith("SAGE: fitting a head to face.png: fit "), status.status()
        log = []
        bpy.types.SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
        assert ("operator", "sage.cancel") in log and any(kind == "progress" and text.startswith("fit ") for kind, text in log), log
        assert bpy.ops.sage.cancel() == {{"FINISHED"}} and job.done and not errors and state.queue.find("invert") is None
        assert settings.photo_head == kept and status.status() == "SAGE: cancelled"

        for path, message in (({str(text)!r}, "notes.png: not an image"), ({str(blank)!r}, "blank.png: no face-like content")):
            scene_setup.assert_refused(lambda: bpy.ops.sage.from_photo(filepath=path, steps=2), message)
            assert len(status.status().splitlines()) == 1 and message in status.status(), status.status()
            assert settings.head == "PHOTO" and settings.photo_head == kept
        limits = session.get().info["limits"]
        limits["photo_bytes"] = 1000  # a photo larger than the backend takes is refused before it is sent
        scene_setup.assert_refused(lambda: bpy.ops.sage.from_photo(filepath={str(photo)!r}), "face.png: 0.0 MiB is more than")
        assert session.get().queue.find("invert") is None and settings.photo_head == kept
        session.get().cache.clear()
        assert bpy.ops.sage.generate() == {{"FINISHED"}}  # the backend serves on; the same head, the same drawing
        assert np.array_equal(np.array(settings.drawing_image.pixels[:]), drawing)
        print("OK")
    """)


@pytest.fixture
def heads_backend(tiny_checkpoint_dir, pencil_head, tmp_path):
    """A backend serving the .sage files of a folder by name (`serve --inversions`): 'alice' fitted to the tiny pencil."""
    from tests.conftest import start_backend, stop_backend

    folder = tmp_path / "heads"
    folder.mkdir()
    (folder / "alice.sage").write_bytes(pencil_head.read_bytes())
    server = start_backend(tiny_checkpoint_dir, extra=("--inversions", str(folder)))
    yield server.address
    stop_backend(server)


def test_a_head_the_backend_serves_by_name_is_picked_drawn_baked_and_batch_named(run_bpy, heads_backend, tmp_path):
    """Head: Server draws a head a studio's backend serves by name (every request sends the name, not the file);
    the Name field lists what hello lists, an unknown or missing name is one line before any request, and a reopened
    .blend keeps the name and renders its frames without a backend."""
    blend = tmp_path / "served.blend"
    run_bpy(f"""
        import os, bpy, numpy as np, scene_setup
        from blender_addon import batch, panel, portrait, session, status
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {heads_backend!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        settings.style = "pencil"
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        seed_drawing = np.array(settings.drawing_image.pixels[:])
        names = session.get().served_heads()
        assert [name for name, _ in names] == ["alice"] and names[0][1].startswith("face.png, "), names
        settings.head = "SERVER"
        for name, words in (("", "choose a head (alice)"), ("bob", "head 'bob' is not on this backend (it serves alice)")):
            settings.served_head = name
            log = []
            panel.SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
            assert ("label", words) in log, log
            scene_setup.assert_refused(bpy.ops.sage.generate, words)
        settings.served_head = "alice"
        assert bpy.ops.sage.generate() == {{"FINISHED"}}, status.status()
        assert status.status() == "SAGE: drew the head alice in style pencil", status.status()
        alice = np.array(settings.drawing_image.pixels[:])
        assert not np.array_equal(alice, seed_drawing)
        settings.style = "line"  # fitted to the pencil's model: the backend's one line, the drawing kept
        scene_setup.assert_refused(bpy.ops.sage.generate, "fitted to another model")
        assert np.array_equal(np.array(settings.drawing_image.pixels[:]), alice)
        settings.style = "pencil"
        settings.turntable_frames = 2
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}, status.status()
        written = batch.render_animation(scene, "frames", {heads_backend!r}, 60.0)
        assert sorted(os.path.basename(p) for p in written)[:3] == ["pencil_alice_0001_drawing.png", "pencil_alice_0001_labels.png",
                                                                    "pencil_alice_0001_semantic.png"], written
        scene.frame_set(1)
        np.save("frame1.npy", np.array(settings.drawing_image.pixels[:]))
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
        print("OK")
    """)
    run_bpy(f"""
        import bpy, numpy as np, blender_addon
        blender_addon.register()
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})  # no backend
        scene = bpy.context.scene
        settings = scene.sage_portrait
        assert (settings.head, settings.served_head) == ("SERVER", "alice")
        scene.frame_set(2)
        scene.frame_set(1)
        assert "error" not in bpy.context.window_manager.sage_portrait_status, bpy.context.window_manager.sage_portrait_status
        assert np.array_equal(np.array(settings.drawing_image.pixels[:]), np.load("frame1.npy"))
        print("OK")
    """)
