"""The add-on against the real `sage-backend serve` (tiny preset), through the project's `backend` fixture
(tests/conftest.py)."""


def test_generate_from_a_scene_camera(run_bpy, address):
    run_bpy(f"""
        import bpy, scene_setup
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        assert settings.style
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        assert tuple(settings.drawing_image.size) == (64, 64) and settings.semantic_image.colorspace_settings.name == "sRGB"
        assert {{c["sage_plane"] for c in camera.children}} == {{"drawing", "semantic"}}
        print("OK")
    """)


def test_batch_renders_four_different_drawings(run_bpy, address):
    run_bpy(f"""
        import bpy, os, scene_setup
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        scene.sage_portrait.turntable_frames = 4
        scene.frame_start, scene.frame_end = 1, 4
        from blender_addon import batch, portrait
        bpy.context.view_layer.update()  # matrix_world of freshly placed objects
        portrait.create_turntable(scene, camera, 4)
        batch.main(["--out", "out", "--address", {address!r}, "--timeout", "120"])
        read = lambda out: [open(os.path.join(out, f"line_0_{{f:04d}}_{{kind}}.png"), "rb").read()
                            for f in range(1, 5) for kind in ("drawing", "semantic", "labels")]
        drawings = read("out")[::3]
        assert len(set(drawings)) == 4
        # An animation longer than the backend's max_cameras goes as several requests, frames named as one.
        from blender_addon import session
        plain = session.Session.set_info
        session.Session.set_info = lambda self, h: plain(self, dict(h, limits=dict(h["limits"], max_cameras=3)))
        batch.main(["--out", "out_split", "--address", {address!r}, "--timeout", "120"])
        assert read("out_split") == read("out")
        print("OK")
    """)


def test_mesh_import_has_colour_and_label_attributes(run_bpy, address):
    run_bpy(f"""
        import bpy, scene_setup
        scene, camera, pivot = scene_setup.portrait_scene()
        settings = scene.sage_portrait
        settings.address = {address!r}
        settings.mesh_grid = 32
        bpy.ops.sage.connect()
        assert bpy.ops.sage.import_mesh() == {{"FINISHED"}}
        mesh = bpy.data.objects["SAGE Portrait Mesh"].data
        assert "Col" in mesh.color_attributes and "sage_label" in mesh.attributes and len(mesh.vertices) > 0
        print("OK")
    """)
