"""Every rig and every scene, as Blender's own Render Animation renders it: cameras in any rotation mode,
animated camera data, cameras bound to timeline markers, the batch's frames and scene."""
import pytest

ROTATION_MODES = ("QUATERNION", "AXIS_ANGLE", "XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def test_turntable_keys_look_at_the_head_in_every_rotation_mode(run_bpy):
    """glTF and FBX imports bring quaternion, axis-angle and other Euler orders: the turntable keys the
    property the camera's mode reads (it keyed rotation_euler in XYZ, so such a camera circled looking away),
    respects delta rotations, and between keys turns the short way."""
    run_bpy(f"""
        import bpy, math, scene_setup
        from mathutils import Vector
        from blender_addon import portrait
        scene, camera, pivot = scene_setup.portrait_scene()
        for mode in {ROTATION_MODES!r}:
            for delta in ((0.0, 0.0, 0.0), (0.3, -0.2, 0.5)):
                if camera.animation_data is not None:
                    camera.animation_data_clear()
                camera.rotation_mode = mode
                camera.delta_rotation_euler = delta
                camera.location = (1.0, -2.5, 0.6)
                bpy.context.view_layer.update()
                portrait.create_turntable(scene, camera, 8)
                assert portrait.is_free(camera)  # its own turntable: may be re-keyed
                for frame in (1, 1.5, 2, 4.25, 5, 8):
                    scene.frame_set(int(frame), subframe=frame % 1)
                    world = camera.matrix_world
                    forward = -(world.to_3x3().normalized() @ Vector((0.0, 0.0, 1.0)))
                    towards = (pivot.location - world.translation).normalized()
                    assert forward.dot(towards) > (0.999 if frame % 1 == 0 else 0.95), (mode, delta, frame, forward.dot(towards))
                    up = world.to_3x3().normalized() @ Vector((0.0, 1.0, 0.0))
                    assert up.z > 0.9 or frame % 1, (mode, delta, frame)  # upright on every frame
        print("OK")
    """)


MARKER_SCENE = """
    import bpy, math, numpy as np, scene_setup
    from blender_addon import session
    scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
    settings = scene.sage_portrait
    settings.address = {address!r}
    assert bpy.ops.sage.connect() == {{"FINISHED"}}
    side_data = bpy.data.cameras.new("Side")
    side = bpy.data.objects.new("Side", side_data)
    scene.collection.objects.link(side)
    side.location = (2.5, 0.0, 0.2)
    side.rotation_euler = (math.radians(90), 0.0, math.radians(90))  # Blender's Right view
    side_data.lens = 200.0
    for frame, cam in ((1, camera), (3, side)):  # frames 1-2 from the front, 3-4 from the side
        scene.timeline_markers.new(cam.name, frame=frame).camera = cam
    scene.frame_start, scene.frame_end = 1, 4
    scene.frame_set(1)
"""


@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_render_animation_follows_animated_lens_type_and_marker_cameras_edge_to_edge(run_bpy, address):
    """Render Animation with Follow animation: the lens keyed 200 -> 100 mm (the plane was sized from the
    original lens, so later frames showed the drawing shrunk in a black border), then a timeline marker switches
    to another camera (it rendered the bare scene), whose type is keyed perspective -> orthographic (refused).
    A green world shows wherever the drawing does not reach."""
    run_bpy(MARKER_SCENE.format(address=address) + """
    side_data.keyframe_insert("type", frame=3)
    side_data.type, side_data.ortho_scale = "ORTHO", 0.9
    side_data.keyframe_insert("type", frame=4)
    camera.data.lens = 200.0
    camera.data.keyframe_insert("lens", frame=1)
    camera.data.lens = 100.0
    camera.data.shift_x = 0.1
    camera.data.keyframe_insert("lens", frame=2)
    camera.data.keyframe_insert("shift_x", frame=2)
    camera.data.shift_x = 0.0
    camera.data.keyframe_insert("shift_x", frame=1)
    scene.frame_set(1)
    assert bpy.ops.sage.generate() == {"FINISHED"}, bpy.context.window_manager.sage_portrait_status
    scene.world = bpy.data.worlds.new("Green")
    scene.world.color = (0.0, 1.0, 0.0)
    scene.render.filepath = "//anim/f_"
    bpy.ops.render.render(animation=True)
    assert not session.get().handler_error, session.get().handler_error
    drawings = []
    for frame in range(1, 5):
        image = bpy.data.images.load(bpy.path.abspath(f"//anim/f_{frame:04d}.png"))
        pixels = np.array(image.pixels[:]).reshape(64, 64, 4)
        green = (pixels[..., 1] > 0.9) & (pixels[..., 0] < 0.1) & (pixels[..., 2] < 0.1)
        assert not green.any(), (frame, int(green.sum()))
        drawings.append(pixels)
    assert any(plane.parent == side for plane in bpy.data.objects if plane.get("sage_plane"))  # frames 3-4 drew its view
    assert np.abs(drawings[3] - drawings[2]).max() > 0.01  # the orthographic frame is its own view
    print("OK")
    """)


@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_batch_draws_the_marker_camera_of_each_frame_in_the_range_and_step(run_bpy, address):
    """The batch draws what Render Animation renders: each frame through the camera its timeline marker binds
    (it drew every frame from the first camera), the scene's or the command line's range and step, the scene
    named on the command line; and it enables the add-on without reloading it ("module changed on disk")."""
    out = run_bpy(MARKER_SCENE.format(address=address) + """
    import contextlib, io, os
    from blender_addon import batch
    other = scene.copy()
    other.name = "Other"
    other.frame_start, other.frame_end = 7, 9
    bpy.context.window.scene = other  # the active scene is not the one the batch is told to draw
    def drawings(folder):
        names = sorted(n for n in os.listdir(folder) if n.endswith("_drawing.png"))
        return {int(n.split("_")[-2]): open(os.path.join(folder, n), "rb").read() for n in names}
    batch.main(["--out", "all", "--address", {address!r}, "--scene", "Scene", "--timeout", "120"])
    frames = drawings("all")
    assert sorted(frames) == [1, 2, 3, 4], sorted(frames)
    assert frames[1] == frames[2] and frames[3] == frames[4] and frames[1] != frames[3]
    scene.frame_step = 2
    batch.main(["--out", "step", "--address", {address!r}, "--scene", "Scene", "--timeout", "120"])
    assert drawings("step") == {1: frames[1], 3: frames[3]}
    batch.main(["--out", "range", "--address", {address!r}, "--scene", "Scene", "--frame-start", "2", "--frame-end", "3",
                "--frame-step", "1"])
    assert drawings("range") == {2: frames[2], 3: frames[3]}
    for argv, line in ((["--scene", "Nope"], "no scene named 'Nope' in this file (its scenes: 'Other', 'Scene')"),
                       (["--scene", "Scene", "--frame-start", "5", "--frame-end", "2"], "the frame range 5..2 is empty"),
                       (["--scene", "Scene", "--frame-start", "-2", "--frame-end", "1"], "the frame range -2..1 starts before frame 0"),
                       (["--frame-step", "0"], "argument --frame-step: must be at least 1, not 0"),
                       (["--demo-scene", "2", "--resolution", "0"], "argument --resolution: must be at least 1, not 0"),
                       (["--demo-scene", "2", "--resolution", "9999"], "resolution 9999 is outside what the backend takes")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                batch.main(["--out", "bad", "--address", {address!r}] + argv)
            except SystemExit as exc:
                assert exc.code in (1, 2), exc.code
            else:
                raise AssertionError(f"{{argv}} ran")
        assert line in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()
        assert not os.path.exists("bad")
    # A camera that looks away from the head is drawn (paper), and both the batch and Bake say where.
    side.rotation_euler.z += math.pi
    bpy.context.view_layer.update()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        batch.main(["--out", "away", "--address", {address!r}, "--scene", "Scene", "--frame-start", "1", "--frame-end", "4"])
    assert "the head is outside the frame at frames 3, 4" in out.getvalue(), out.getvalue()
    bpy.context.window.scene = scene
    assert bpy.ops.sage.connect() == {"FINISHED"}  # the batch disconnects when it ends
    assert bpy.ops.sage.bake_turntable() == {"FINISHED"}
    assert bpy.context.window_manager.sage_portrait_status.endswith("; the head is outside the frame at frames 3, 4")
    print("OK")
    """.replace("{address!r}", repr(address)))
    assert "module changed on disk" not in out and "reloading" not in out


@pytest.mark.parametrize("serve_mode", ["in-process"], indirect=True)
def test_a_camera_rig_scaled_unevenly_is_framed_and_drawn_and_said(run_bpy, address):
    """A camera rotated under an Empty scaled (2, 0.5, 1.5): its world matrix is sheared, which the protocol refuses
    as a camera (Generate said the backend's `camera.cam2world's 3x3 part must be a rotation`, and Frame Head
    "framed" it at 0% of the frame). Frame Head fills the shot, Generate draws the nearest plain view, and
    both the panel and Generate say why the drawing and the render can differ. Mirrored by a negative scale: the same."""
    run_bpy(f"""
        import bpy, math, scene_setup
        from blender_addon import panel
        scene, camera, pivot = scene_setup.portrait_scene()
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        status = lambda: bpy.context.window_manager.sage_portrait_status
        rig = bpy.data.objects.new("Rig", None)
        scene.collection.objects.link(rig)
        camera.parent = rig
        camera.rotation_euler = (math.radians(85), math.radians(8), math.radians(20))
        camera.location = (0.9, -2.4, 0.4)
        for scale, words in (((2.0, 0.5, 1.5), "skews it by"), ((-1.0, 1.0, 1.0), "mirrors it")):
            rig.scale = scale
            bpy.context.view_layer.update()
            assert words in panel.rig_hint(scene), panel.rig_hint(scene)
            assert bpy.ops.sage.frame_head(method="CAMERA") == {{"FINISHED"}}, status()
            assert "of the frame" in status() and "fills 0%" not in status(), status()
            assert bpy.ops.sage.generate() == {{"FINISHED"}}, status()
            assert words in status() and "Ctrl+A" in status(), status()
        rig.scale = (3.0, 3.0, 3.0)  # uniform: nothing to say
        bpy.context.view_layer.update()
        assert panel.rig_hint(scene) == ""
        print("OK")
    """)
