"""The add-on inside bpy against the real backend (tiny preset): register/unregister, panel, generate, images,
planes, turntable render, batch, mesh import, errors and reconnect."""
import threading
import time

import numpy as np

from conftest import free_port, start_real_backend

from sage_backend.labels import LABEL_NAMES
from sage_backend.mesh import face_labels


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
        for op in ("sage.connect", "sage.launch_backend", "sage.generate", "sage.bake_turntable", "sage.draw_grease_pencil", "sage.cancel",
                   "sage.export_mesh", "sage.import_mesh"):
            assert op in ops, op
        assert ("label", "Not connected") in log
        assert bpy.context.scene.sage_portrait.address == "tcp://127.0.0.1:5555"
        blender_addon.unregister()
        assert not hasattr(bpy.types.Scene, "sage_portrait")
        assert not any("sage" in getattr(h, "__module__", "") for h in bpy.app.handlers.frame_change_post)
        from blender_addon import jobs
        assert not bpy.app.timers.is_registered(jobs.tick) and not jobs._hooks
        assert session._session is None
        print("OK")
    """)


def test_generate_makes_flipped_images_with_colour_spaces_on_planes_that_fill_the_view(run_bpy, address):
    run_bpy(f"""
        import bpy, numpy as np, scene_setup
        from mathutils import Vector
        from bpy_extras.object_utils import world_to_camera_view
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        assert settings.style == "line"
        assert "sage-backend" in bpy.context.window_manager.sage_portrait_status
        assert "cpu" in bpy.context.window_manager.sage_portrait_status
        # By default the request names no psi, so the backend renders at the style's own (hello reports it).
        from blender_addon import portrait, session
        assert "psi" not in portrait.base_fields(scene) and session.get().style_psi("line") == 0.5
        view = portrait.protocol_camera(scene, camera)
        assert portrait.cache_key(portrait.base_fields(scene), view)[2] == 0.5  # the frame is cached under the psi it has
        settings.use_style_psi, settings.psi = False, 0.7
        assert abs(portrait.base_fields(scene)["psi"] - 0.7) < 1e-6
        assert abs(portrait.cache_key(portrait.base_fields(scene), view)[2] - 0.7) < 1e-6
        settings.use_style_psi = True
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        drawing, semantic = settings.drawing_image, settings.semantic_image
        assert tuple(drawing.size) == (64, 64) and tuple(semantic.size) == (64, 64)
        assert drawing.colorspace_settings.name == "sRGB" and semantic.colorspace_settings.name == "sRGB"
        # The same request through a plain client: Blender's bottom-up rows must be the protocol's rows flipped.
        from blender_addon.camera import camera_from_blender
        from blender_addon.client import Client
        reference = Client({address!r}, 30.0)
        reply = reference.request("generate", {{"style": "line", "seed": settings.seed, "psi": session.get().style_psi("line"),
                                   "camera": camera_from_blender(camera, scene, pivot), "resolution": 64}})
        reference.close()
        expected = np.frombuffer(reply.blobs["drawing"].data, np.uint8).reshape(64, 64, 3) / 255
        pixels = np.array(drawing.pixels[:]).reshape(64, 64, 4)
        assert np.allclose(pixels[::-1, :, :3], expected, atol=1 / 255), "drawing rows or values differ"
        palette = np.array(session.get().palette) / 255
        labels = np.frombuffer(reply.blobs["semantic"].data, np.uint8).reshape(64, 64)
        sem = np.array(semantic.pixels[:]).reshape(64, 64, 4)
        assert np.allclose(sem[::-1, :, :3], palette[labels], atol=1e-6)  # class colours exact, rows flipped
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
        # The shown pair and frame 1's pair kept in the .blend (docs/addon.md, "Saving and undo"): both replaced in place.
        assert settings.drawing_image == drawing and len(bpy.data.images) == 4, list(bpy.data.images)
        assert not np.allclose(np.array(drawing.pixels[:]).reshape(64, 64, 4), pixels)  # seed 7 drew another head
        pixels = np.array(drawing.pixels[:]).reshape(64, 64, 4)
        print("OK")
    """)


def test_bake_and_render_a_four_frame_turntable_with_workbench(run_bpy, address):
    run_bpy(f"""
        import bpy, numpy as np, scene_setup, hashlib
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        bpy.ops.sage.connect()
        settings.turntable_frames = 4
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}, bpy.context.window_manager.sage_portrait_status
        assert camera.animation_data.action is not None and (scene.frame_start, scene.frame_end) == (1, 4)
        from blender_addon import session
        assert len(session.get().cache.entries) == 4
        session.get().client.close()  # rendering must be served from the baked cache alone
        scene.render.filepath = "//frames/f_"
        scene.render.image_settings.file_format = "PNG"
        scene.display.render_aa = "OFF"  # exact pixels: no jittered samples blending neighbouring rows
        bpy.ops.render.render(animation=True)
        rendered = {{}}
        for frame in range(1, 5):
            image = bpy.data.images.load(bpy.path.abspath(f"//frames/f_{{frame:04d}}.png"))
            rendered[frame] = np.array(image.pixels[:]).reshape(64, 64, 4)
        assert len({{hashlib.sha256(p.tobytes()).hexdigest() for p in rendered.values()}}) == 4
        # The render of the frame the scene is back on shows the drawing the plane holds now, rows the right way
        # up (after Render Animation Blender returns to the start frame, and the handler shows its drawing).
        pixels = rendered[scene.frame_current]
        drawing = np.array(bpy.data.images["SAGE Drawing"].pixels[:]).reshape(64, 64, 4)[..., :3]
        error = np.abs(pixels[..., :3] - drawing).mean()
        assert error < 0.02 and error < np.abs(pixels[::-1, :, :3] - drawing).mean(), error
        print("OK")
    """)


def test_headless_batch_writes_pngs_and_fails_clearly_without_a_backend(run_bpy, address, tmp_path):
    out = run_bpy(f"""
        import bpy, scene_setup, os, math
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        scene.frame_start, scene.frame_end = 1, 4
        for frame in range(1, 5):
            camera.location.x = 0.3 * frame
            camera.keyframe_insert("location", frame=frame)
        from blender_addon import batch
        batch.main(["--out", "batch_out", "--address", {address!r}, "--timeout", "20"])
        names = sorted(os.listdir("batch_out"))
        # the backend's naming scheme: <style>_<seed>_<scene frame:04d>_<kind>.png (the first style, seed 0 by default)
        expected = [f"line_0_{{f:04d}}_{{k}}.png" for f in range(1, 5) for k in ("drawing", "labels", "semantic")]
        assert names == expected, names
        contents = {{open(os.path.join("batch_out", n), "rb").read() for n in names if n.endswith("drawing.png")}}
        assert len(contents) == 4
        try:
            batch.main(["--out", "batch_out2", "--address", "tcp://127.0.0.1:9", "--timeout", "0.5"])
        except SystemExit as exc:
            assert exc.code == 1
        else:
            raise AssertionError("batch succeeded without a backend")
        assert not os.path.exists("batch_out2") or not os.listdir("batch_out2")
        # An out folder that refuses files: one line naming the first file, before any frame is drawn.
        read_only = "/sys" if os.geteuid() == 0 else "read-only"  # root writes into any folder
        os.makedirs("read-only", 0o555, exist_ok=True)
        import contextlib, io
        with contextlib.redirect_stderr(io.StringIO()) as said:
            try:
                batch.main(["--out", read_only, "--address", {address!r}, "--timeout", "20"])
            except SystemExit as exc:
                assert exc.code == 1
            else:
                raise AssertionError("batch wrote into a read-only folder")
        expected = f"SAGE batch failed: {{os.path.join(read_only, 'line_0_0001_drawing.png')}}: could not be written (Permission denied)"
        assert said.getvalue().startswith(expected) and ".partial" not in said.getvalue(), said.getvalue()
        os.chmod("read-only", 0o755)
        print("OK")
    """)
    assert "wrote 12 images" in out


def test_import_mesh_keeps_colours_labels_and_a_part_per_class_at_the_pivot(run_bpy, address, tmp_path):
    run_bpy(f"""
        import bpy, numpy as np, scene_setup, os
        scene, camera, pivot = scene_setup.portrait_scene()
        pivot.scale = (2.0, 2.0, 2.0)
        settings = scene.sage_portrait
        settings.address = {address!r}
        settings.mesh_grid = 64  # three meshes below: seconds each, not a minute
        bpy.ops.sage.connect()
        assert bpy.ops.sage.import_mesh() == {{"FINISHED"}}, bpy.context.window_manager.sage_portrait_status
        obj = bpy.data.objects["SAGE Portrait Mesh"]
        mesh = obj.data
        assert tuple(obj.location) == tuple(pivot.location) and tuple(obj.scale) == (2.0, 2.0, 2.0)
        assert mesh.color_attributes.active_color.name == "Col"
        labels = np.zeros(len(mesh.vertices), np.int32)
        mesh.attributes["sage_label"].data.foreach_get("value", labels)
        assert labels.min() >= 0 and labels.max() < 19 and len(set(labels)) > 1
        # A part per class present: its vertex group holds exactly the vertices labelled so, its material slot (the
        # palette colour) exactly the faces of that class (the backend's rule: mesh.face_labels).
        from sage_backend.labels import LABEL_NAMES, PALETTE  # numpy only, no torch: importable in every line
        present = sorted(set(labels.tolist()))
        assert [g.name for g in obj.vertex_groups] == [LABEL_NAMES[c] for c in present]
        for group in obj.vertex_groups:
            members = sorted(v.index for v in mesh.vertices if any(e.group == group.index and e.weight == 1.0 for e in v.groups))
            assert members == np.flatnonzero(labels == LABEL_NAMES.index(group.name)).tolist(), group.name
        corners = np.zeros(len(mesh.polygons) * 3, np.int32)
        mesh.polygons.foreach_get("vertices", corners)
        index = np.zeros(len(mesh.polygons), np.int32)
        mesh.polygons.foreach_get("material_index", index)
        np.savez("parts.npz", labels=labels, corners=corners.reshape(-1, 3), index=index,  # checked outside (torch)
                 slots=np.array([m.name for m in mesh.materials]))
        hair = bpy.data.materials.get("SAGE hair") or mesh.materials[0]
        import mathutils
        srgb = [round(255 * c) for c in mathutils.Color(hair.diffuse_color[:3]).from_scene_linear_to_srgb()]  # Blender converts back
        assert srgb == list(PALETTE[LABEL_NAMES.index(hair.name[5:])]), srgb
        colors = np.zeros(len(mesh.vertices) * 4, np.float32)
        mesh.color_attributes["Col"].data.foreach_get("color", colors)
        assert colors.reshape(-1, 4)[:, :3].max() > 0
        assert settings.mesh_format == "ply"  # the typed extension decides, not the Format setting
        assert bpy.ops.sage.export_mesh(filepath=os.path.abspath("head.glb")) == {{"FINISHED"}}
        assert open("head.glb", "rb").read(4) == b"glTF" and not os.path.exists("head.glb.ply")
        assert bpy.ops.sage.export_mesh(filepath=os.path.abspath("my head.obj")) == {{"FINISHED"}}  # with its library
        assert b"mtllib my head.mtl" in open("my head.obj", "rb").read() and b"newmtl" in open("my head.mtl", "rb").read()
        assert not [n for n in os.listdir(".") if n.endswith(".part")]
        # A destination that refuses is named as chosen (not the hidden .partial), before the mesh's minutes of work.
        os.mkdir("taken.obj")
        read_only = "/sys/head.ply" if os.geteuid() == 0 else "read-only/head.ply"  # root writes into any folder
        os.mkdir("read-only", 0o555)
        for target in ("taken.obj", read_only):
            scene_setup.assert_refused(lambda: bpy.ops.sage.export_mesh(filepath=os.path.abspath(target)),
                                       f"{{os.path.abspath(target)}}: could not be written (")
        assert ".partial" not in bpy.context.window_manager.sage_portrait_status
        os.chmod("read-only", 0o755)
        print("OK")
    """)
    parts = np.load(tmp_path / "parts.npz")
    expected = face_labels(parts["corners"], parts["labels"])
    slots = parts["slots"].tolist()
    assert slots == ["SAGE " + LABEL_NAMES[c] for c in np.unique(expected)]
    assert [slots[i] for i in parts["index"]] == ["SAGE " + LABEL_NAMES[c] for c in expected]


def test_part_styles_render_a_mixed_drawing_and_bad_ones_are_one_line(run_bpy, address):
    run_bpy(f"""
        import bpy, numpy as np, scene_setup
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        drawing = lambda: np.array(bpy.data.images["SAGE Drawing"].pixels[:])
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        plain = drawing()
        settings.part_styles = "hair=pencil, skin = pencil"
        assert bpy.ops.sage.generate() == {{"FINISHED"}}, bpy.context.window_manager.sage_portrait_status
        assert not np.array_equal(drawing(), plain)  # not the cached plain frame: part styles are in its key
        for text, line in (("hair", "Part Styles takes PART=STYLE pairs"), ("beard=pencil", "part_styles: unknown part 'beard'"),
                           ("hair=pencil, skin=line, hair=line", "Part Styles names 'hair' twice; give each part one style"),
                           ("hair=oil", "part_styles: unknown style 'oil'")):
            settings.part_styles = text
            scene_setup.assert_refused(bpy.ops.sage.generate, line)
            if "Part Styles" in line:  # the add-on's own check: the panel says it before Generate is pressed
                log = []
                bpy.types.SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
                assert any(kind == "label" and text.startswith(line) for kind, text in log), log
        from blender_addon import mesh_import
        settings.part_styles = "hair:pencil"  # malformed, yet a mesh has no drawing: Import Mesh still asks
        assert "part_styles" not in mesh_import.mesh_fields(scene, "ply")
        settings.part_styles = ""
        assert bpy.ops.sage.generate() == {{"FINISHED"}} and np.array_equal(drawing(), plain)
        print("OK")
    """)


def test_dead_backend_gives_a_clear_error_and_the_addon_reconnects(run_bpy, tmp_path, tiny_checkpoint_dir):
    address = f"tcp://127.0.0.1:{free_port()}"
    backend = start_real_backend(address, str(tiny_checkpoint_dir))
    script = f"""
        import bpy, os, scene_setup, time
        from real_backend import start_real_backend  # the project's Python, whichever line runs this
        from blender_addon import session
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        bpy.ops.sage.connect()
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        open("ready", "w").close()
        while not os.path.exists("killed"):
            time.sleep(0.05)
        import blender_addon.props as props
        props.DEFAULT_TIMEOUT_S = 1.0  # the add-on isn't enabled through preferences here: no timeout setting
        settings.turntable_frames = 4
        scene_setup.assert_refused(bpy.ops.sage.bake_turntable, "did not answer within 1 s")  # no backend
        status = bpy.context.window_manager.sage_portrait_status
        assert status.startswith("SAGE error: backend at") and "did not answer within 1 s" in status, status
        backend = start_real_backend({address!r}, {str(tiny_checkpoint_dir)!r})
        props.DEFAULT_TIMEOUT_S = 60.0  # a fresh process's first frames are slower than 1 s on a busy CPU
        try:
            assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}, bpy.context.window_manager.sage_portrait_status
        finally:
            backend.kill()
        print("OK")
    """
    def kill_when_ready():
        while not (tmp_path / "ready").exists():
            time.sleep(0.05)
        backend.kill()
        backend.wait()
        (tmp_path / "killed").touch()

    killer = threading.Thread(target=kill_when_ready)
    killer.start()
    try:
        run_bpy(script)
    finally:
        backend.kill()
        killer.join(5)


def test_live_keeps_one_request_in_flight_and_the_newest_pose_wins(run_bpy, address):
    run_bpy(f"""
        import bpy, scene_setup
        from blender_addon import jobs, live, session, portrait
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        bpy.ops.sage.connect()
        live.LIVE_INTERVAL_S = 0.0  # the throttle is not under test here
        state = session.get()
        settings.live = True
        assert live.mode.enabled
        live.step()
        first = live.mode.job
        assert first is not None and list(state.queue.jobs.values()) == [first]
        for x in (0.1, 0.2, 0.3):  # the camera moves while the first request is in flight
            camera.location.x = x
            bpy.context.view_layer.update()
            live.step()
            assert live.mode.job is first and len(state.queue.jobs) == 1
        while not first.done:
            state.poll(0.05)
        live.step()  # the next request is for the newest pose only
        newest = portrait.cache_key(portrait.base_fields(scene), portrait.protocol_camera(scene, camera))
        assert live.mode.job is not first and live.mode.key == newest
        while state.queue.jobs:
            state.poll(0.05)
        assert state.cache.get(newest) is not None and len(state.cache.entries) == 2
        settings.live = False
        assert jobs.tick() is None  # nothing left to do: the timer unregisters itself
        print("OK")
    """)


def test_render_animation_fetches_unbaked_frames_synchronously(run_bpy, address):
    run_bpy(f"""
        import bpy, numpy as np, scene_setup
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        bpy.ops.sage.connect()
        bpy.ops.sage.generate()
        scene.frame_start, scene.frame_end = 1, 2
        for frame, x in ((1, 0.0), (2, 0.4)):
            camera.location.x = x
            camera.keyframe_insert("location", frame=frame)
        scene.display.render_aa = "OFF"
        scene.render.filepath = "//anim/f_"
        bpy.ops.render.render(animation=True)
        from blender_addon import session
        assert len(session.get().cache.entries) == 2 and not session.get().handler_error
        a, b = (np.array(bpy.data.images.load(bpy.path.abspath(f"//anim/f_{{f:04d}}.png")).pixels[:]) for f in (1, 2))
        assert not np.allclose(a, b)
        print("OK")
    """)


def test_default_camera_at_any_distance_and_lens_draws_the_head_and_nothing_else(run_bpy, tmp_path):
    """Blender's default camera (36 mm sensor) at 5 distances x 3 lenses, against the shipped 'line' model:
    no foreground outside the head's projected bounds (thousands of pixels before), the head there."""
    from sage_backend.checkpoint import bundled_checkpoint_dir

    address = f"tcp://127.0.0.1:{free_port()}"
    backend = start_real_backend(address, str(bundled_checkpoint_dir()))
    try:
        run_bpy(f"""
            import bpy, math, numpy as np, scene_setup
            from mathutils import Vector
            from bpy_extras.object_utils import world_to_camera_view
            from blender_addon import session
            scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
            settings = scene.sage_portrait
            settings.address = {address!r}
            assert bpy.ops.sage.connect() == {{"FINISHED"}}
            settings.style = "line"
            camera.data.sensor_width = 36.0
            bound = 0.2  # the trained bounds' radius (0.199 for the shipped models), in pivot units
            for lens in (24.0, 50.0, 135.0):
                for distance in (0.8, 1.5, 3.0, 6.0, 12.0):
                    camera.data.lens = lens
                    camera.location = (0.4 * distance, -distance, 0.2 + 0.1 * distance)
                    camera.rotation_euler = (pivot.location - camera.location).to_track_quat("-Z", "Y").to_euler()
                    bpy.context.view_layer.update()
                    assert bpy.ops.sage.generate() == {{"FINISHED"}}
                    labels = session.get().cache.get(list(session.get().cache.entries)[-1])["semantic"]
                    centre = world_to_camera_view(scene, camera, pivot.location)
                    radius = math.atan(bound / (camera.location - pivot.location).length)
                    half = math.tan(radius) / (camera.data.sensor_width / 2 / lens) / 2  # in frame units
                    rows, cols = np.nonzero(labels)
                    assert len(rows) or half * 64 < 3, (lens, distance)  # the head is there unless under ~3 px
                    x, y = (cols + 0.5) / 64, 1 - (rows + 0.5) / 64
                    outside = (np.abs(x - centre.x) > half + 1 / 64) | (np.abs(y - centre.y) > half + 1 / 64)
                    assert not outside.any(), (lens, distance, int(outside.sum()))
            print("OK")
        """)
    finally:
        backend.kill()


def test_rigged_cameras_bake_and_render_turntables_that_look_at_the_head(run_bpy, address):
    """A camera parented to a rotating Empty, and one aimed by Track To: both bake (no keys added to them)
    and every frame shows the head in the middle."""
    run_bpy(f"""
        import bpy, math, numpy as np, scene_setup
        from blender_addon import session
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        bpy.ops.sage.connect()
        scene.frame_start, scene.frame_end = 1, 4
        rig = bpy.data.objects.new("Rig", None)
        rig.location = pivot.location
        scene.collection.objects.link(rig)
        camera.parent = rig
        camera.location = (0.0, -2.5, 0.0)
        for frame in range(1, 5):
            rig.rotation_euler.z = math.radians(90 * (frame - 1))
            rig.keyframe_insert("rotation_euler", frame=frame)
        tracked_data = bpy.data.cameras.new("Tracked")
        tracked_data.lens = 200.0
        tracked = bpy.data.objects.new("Tracked", tracked_data)
        scene.collection.objects.link(tracked)
        constraint = tracked.constraints.new("TRACK_TO")
        constraint.target, constraint.track_axis, constraint.up_axis = pivot, "TRACK_NEGATIVE_Z", "UP_Y"
        for frame in range(1, 5):
            angle = math.radians(60 * (frame - 1))
            tracked.location = (2.5 * math.sin(angle), -2.5 * math.cos(angle), 0.5)
            tracked.keyframe_insert("location", frame=frame)
        for cam in (camera, tracked):
            scene.camera = cam
            session.get().cache.clear()
            assert cam.animation_data is None or cam.animation_data.action is None or cam is tracked
            def keyed():  # the camera's own animation, frame by frame
                path = []
                for frame in range(1, 5):
                    scene.frame_set(frame)
                    path.append((tuple(cam.location), tuple(cam.rotation_euler)))
                return path, cam.animation_data.action if cam.animation_data else None
            before = keyed()
            assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}, bpy.context.window_manager.sage_portrait_status
            assert camera.animation_data is None  # the rig's camera got no keys of its own
            assert keyed() == before  # its own keys (the tracked camera's path) untouched
            entries = list(session.get().cache.entries.values())
            assert len(entries) == 4
            for images in entries:
                rows, cols = np.nonzero(images["semantic"])
                assert len(rows) > 50 and abs(rows.mean() - 31.5) < 10 and abs(cols.mean() - 31.5) < 10, (cam.name, rows.mean(), cols.mean())
            scene.render.filepath = f"//{{cam.name}}/f_"
            bpy.ops.render.render(animation=True)
            assert not session.get().handler_error
        # A still camera with a parent is not the add-on's to key: one clear line, nothing written.
        rig.animation_data_clear()
        scene.camera = camera
        scene_setup.assert_refused(bpy.ops.sage.bake_turntable, "will not overwrite")
        assert camera.animation_data is None
        print("OK")
    """)
