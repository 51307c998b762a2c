"""Draw as Grease Pencil and the Strokes setting, in real bpy against a real backend serving the shipped 'line' style:
the strokes' camera render covers the drawing's ink, a layer per part present, a keyframe per baked frame."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sage_backend.checkpoint import bundled_checkpoint_dir
from tests.addon.conftest import free_port, start_real_backend

# Blender 4.2 (legacy Grease Pencil) refuses in poll(); the script then checks only that.
SCENE = """
    import bpy, numpy as np, scene_setup
    from blender_addon import grease, portrait, session
    scene, camera, pivot = scene_setup.portrait_scene(resolution={resolution})
    settings = scene.sage_portrait
    settings.address = {address!r}
    assert bpy.ops.sage.connect() == {{"FINISHED"}}
    settings.style = "line"
    assert bpy.ops.sage.frame_head(method="CAMERA") == {{"FINISHED"}}
    assert not bpy.ops.sage.draw_grease_pencil.poll()  # no drawing yet
"""


@pytest.fixture(scope="module")
def line_address():
    """A backend serving the shipped 'line' style alone (its ink is what the strokes trace)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    backend = start_real_backend(address, str(bundled_checkpoint_dir() / "line.safetensors"))
    yield address
    backend.kill()
    backend.wait()


def test_grease_pencil_strokes_render_over_the_drawings_ink(run_bpy, line_address, tmp_path, blender):
    run_bpy(SCENE.format(resolution=256, address=line_address) + f"""
    assert bpy.ops.sage.generate() == {{"FINISHED"}}
    assert bpy.ops.sage.draw_grease_pencil() == {{"FINISHED"}}
    arrays = session.get().cache.get(list(session.get().cache.entries)[-1])
    strokes = arrays["strokes"]
    obj = grease.find_object(camera)
    present = sorted({{strokes.part_names[p] for p in strokes.parts}})
    assert sorted(layer.name for layer in obj.data.layers) == present and len(present) >= 3, present
    assert obj.active_material.grease_pencil.color[:3] == (0.0, 0.0, 0.0)
    # Its camera render, the drawing's planes hidden (Show: None), on a transparent film: where the strokes are.
    settings.display = "NONE"
    scene.render.film_transparent = True
    scene.render.filepath = {str(tmp_path / "strokes.png")!r}
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(256, 256, 4)[::-1]  # Blender's rows run bottom-up
    np.save({str(tmp_path / "covered.npy")!r}, pixels[..., 3] > 0.5)
    np.save({str(tmp_path / "drawing.npy")!r}, arrays["drawing"])
    print("OK")
    """)
    from sage_backend.strokes import ink_mask

    covered, ink = np.load(tmp_path / "covered.npy"), ink_mask(np.load(tmp_path / "drawing.npy"))
    covered, ink = ndimage.binary_dilation(covered), ndimage.binary_dilation(ink)  # 1 px each
    iou = (covered & ink).sum() / (covered | ink).sum()
    print(f"bpy {blender.bpy}: strokes' render vs the drawing's ink, IoU {iou:.3f} (1 px dilation)")
    assert iou >= 0.7


def test_strokes_setting_keys_each_baked_frame_and_follow_keys_new_ones(run_bpy, line_address):
    run_bpy(SCENE.format(resolution=64, address=line_address) + """
    settings.strokes = True
    settings.turntable_frames = 8
    assert bpy.ops.sage.bake_turntable() == {"FINISHED"}
    obj = grease.find_object(camera)
    assert obj is not None and len(obj.data.layers) >= 3
    keyed = {layer.name: sorted(key.frame_number for key in layer.frames) for layer in obj.data.layers}
    for name, frames in keyed.items():  # a layer is keyed at every frame from its part's first (empty where absent)
        assert frames == list(range(frames[0], 9)), (name, frames)
    assert min(frames[0] for frames in keyed.values()) == 1  # 8 frames, 8 keyframes
    strokes_per_frame = [sum(len(key.drawing.strokes) for layer in obj.data.layers for key in layer.frames if key.frame_number == f)
                         for f in range(1, 9)]
    assert all(strokes_per_frame) and len(set(strokes_per_frame)) > 1, strokes_per_frame  # the turntable's own strokes
    # Follow animation keys a frame past the bake too; the setting off, nothing is keyed.
    scene.frame_end = 10
    scene.frame_set(10)  # the turntable's keys hold their last pose past frame 8
    assert all(any(key.frame_number == 10 for key in layer.frames) for layer in obj.data.layers)
    settings.strokes = False
    scene.frame_set(9)
    assert not any(key.frame_number == 9 for layer in obj.data.layers for key in layer.frames)
    print("OK")
    """)


@pytest.mark.every_blender
def test_draw_as_grease_pencil_says_why_it_cannot_run(run_bpy, blender):
    """Greyed out without a connection; Blender 4.2 (legacy Grease Pencil) says in the panel that it needs 4.3+."""
    out = run_bpy("""
        import bpy, scene_setup
        from blender_addon import grease
        from blender_addon.panel import SAGE_PT_portrait
        scene, camera, pivot = scene_setup.portrait_scene()
        log = []
        SAGE_PT_portrait.draw(type("P", (), {"layout": scene_setup.StandInLayout(log)})(), bpy.context)
        assert ("operator", "sage.draw_grease_pencil") in log and not bpy.ops.sage.draw_grease_pencil.poll()
        reason = grease.unsupported()
        assert (("label", reason) in log) == bool(reason)
        print("REASON", repr(reason))
        import blender_addon
        blender_addon.unregister()  # bpy 4.2 crashes at exit with the add-on's timer and handlers left registered
    """)
    reason = out.split("REASON ", 1)[1].strip()
    if blender.bpy.startswith("4.2"):
        assert reason == "'Grease Pencil strokes need Blender 4.3 or newer (Grease Pencil v3); this is 4.2.0'"
    else:
        assert reason == "''"


@pytest.mark.every_blender
@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_the_strokes_setting_never_stops_drawing_where_blender_cannot_hold_strokes(run_bpy, address, blender):
    """Strokes on (or a file saved with it on in a newer Blender) in Blender 4.2: Generate, Bake and Follow draw
    and key no strokes (they failed with "'GPencilLayer' object has no attribute 'name'"); 4.3+ keys them."""
    out = run_bpy(f"""
        import bpy, scene_setup
        from blender_addon import grease
        scene, camera, pivot = scene_setup.portrait_scene()
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        settings.strokes, settings.turntable_frames = True, 2
        status = lambda: bpy.context.window_manager.sage_portrait_status
        assert bpy.ops.sage.generate() == {{"FINISHED"}}, status()
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}, status()
        scene.frame_set(2)
        assert "error" not in status(), status()
        print("KEYED", grease.find_object(camera) is not None)
        import blender_addon
        blender_addon.unregister()  # bpy 4.2 crashes at exit with the add-on's timer and handlers left registered
    """)
    assert out.split("KEYED ", 1)[1].split()[0] == str(not blender.bpy.startswith("4.2"))
