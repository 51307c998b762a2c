"""The add-on inside bpy against a stand-in backend: register/unregister, panel, generate, images, planes,
turntable render, batch, mesh import, errors and reconnect."""
import subprocess
import sys

from conftest import REPO, start_stand_in


def test_register_panel_and_unregister_leave_nothing_behind(run_bpy):
    run_bpy("""
        import bpy, scene_setup, blender_addon
        from blender_addon import session
        scene, camera, pivot = scene_setup.portrait_scene()
        from blender_addon.panel import SAGE_PT_portrait
        log = []
        panel = type("P", (), {"layout": scene_setup.StandInLayout(log)})()
        SAGE_PT_portrait.draw(panel, bpy.context)
        ops = [name for kind, name in log if kind == "operator"]
        for op in ("sage.connect", "sage.launch_backend", "sage.generate", "sage.bake_turntable", "sage.cancel", "sage.export_mesh", "sage.import_mesh"):
            assert op in ops, op
        assert ("label", "Not connected") in log
        assert bpy.context.scene.sage_portrait.address == "tcp://127.0.0.1:5555"
        blender_addon.unregister()
        assert not hasattr(bpy.types.Scene, "sage_portrait")
        assert not any("sage" in getattr(h, "__module__", "") for h in bpy.app.handlers.frame_change_post)
        assert not bpy.app.timers.is_registered(session._tick)
        assert session._session is None
        print("OK")
    """)


def test_generate_makes_flipped_images_with_colour_spaces_on_planes_that_fill_the_view(run_bpy, stand_in):
    run_bpy(f"""
        import bpy, numpy as np, scene_setup
        from mathutils import Vector
        from bpy_extras.object_utils import world_to_camera_view
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {stand_in!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        assert settings.style == "ink"
        assert "stand-in 0 on cpu" in bpy.context.window_manager.sage_portrait_status
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        drawing, semantic = settings.drawing_image, settings.semantic_image
        assert tuple(drawing.size) == (64, 64) and tuple(semantic.size) == (64, 64)
        assert drawing.colorspace_settings.name == "sRGB" and semantic.colorspace_settings.name == "Non-Color"
        pixels = np.array(drawing.pixels[:]).reshape(64, 64, 4)
        assert np.allclose(pixels[-1, :, :3], 1.0) and not np.allclose(pixels[0, :, :3], 1.0)  # protocol row 0 = Blender top row
        from blender_addon import session
        palette = np.array(session.get().palette) / 255
        sem = np.array(semantic.pixels[:]).reshape(64, 64, 4)
        assert np.allclose(sem[-1, 0, :3], palette[13], atol=1e-6)  # top half is class 13, colours exact
        planes = {{child["sage_plane"]: child for child in camera.children}}
        assert set(planes) == {{"drawing", "semantic"}}
        tex = [n for n in planes["semantic"].active_material.node_tree.nodes if n.type == "TEX_IMAGE"][0]
        assert tex.interpolation == "Closest" and tex.image == semantic
        assert not planes["drawing"].hide_render and planes["semantic"].hide_render
        # The drawing plane's corners land exactly on the camera frame's corners (a square render).
        bpy.context.view_layer.update()
        plane = planes["drawing"]
        corners = [world_to_camera_view(scene, camera, plane.matrix_world @ v.co) for v in plane.data.vertices]
        got = sorted((round(c.x, 4), round(c.y, 4)) for c in corners)
        assert got == [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)], got
        assert all(camera.data.clip_start < c.z < camera.data.clip_end for c in corners)
        settings.display = "SEMANTIC"
        assert planes["drawing"].hide_render and not planes["semantic"].hide_render
        # A second Generate for the same pose comes from the cache; a new seed reuses the same images.
        settings.seed = 7
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        assert settings.drawing_image == drawing and len(bpy.data.images) == 2
        # Packing keeps the pixels in the .blend.
        settings.pack_images = True
        assert bpy.ops.sage.pack_images() == {{"FINISHED"}}
        assert drawing.packed_file is not None
        bpy.ops.wm.save_as_mainfile(filepath="packed.blend")
        import blender_addon; blender_addon.unregister()
        bpy.ops.wm.open_mainfile(filepath="packed.blend")
        again = np.array(bpy.data.images["SAGE Drawing"].pixels[:]).reshape(64, 64, 4)
        assert np.allclose(again, pixels, atol=1/255), abs(again - pixels).max()
        print("OK")
    """)
