"""A photo head in Blender, against the real backend (tiny styles): Open Inversion... of a `.sage` file, From Photo...
(the backend's `invert`), every request sending that head, its keeping in the .blend, and bad input in one line
with the previous head and drawing untouched."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blender_addon import heads

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
        settings.style = "pencil"

        settings.turntable_frames = 3
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}} and status.status().startswith("SAGE: baked 3 frames")
        settings.mesh_grid = 32
        assert bpy.ops.sage.import_mesh() == {{"FINISHED"}}
        written = batch.render_animation(scene, "frames", {address!r}, 60.0)
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
