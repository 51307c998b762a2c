"""The add-on's job machinery in real bpy against the real backend: operators' poll() connected and not,
jobs resolved on the main thread by the tick (timers never fire headless), progress in the status line,
the wire limits from hello, the batch enabling an installed extension itself, and no pyzmq."""
import os
import subprocess
import textwrap
import zipfile
from pathlib import Path

import build_addon
from conftest import REPO, site_without_zmq
from sage_backend.server.protocol import Limits

EXTENSION = "bl_ext.user_default.sage_portrait"


def test_poll_greys_out_what_cannot_run(run_bpy, address):
    run_bpy(f"""
        import bpy, scene_setup
        from blender_addon import session
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        ops = bpy.ops.sage
        def polls():
            return {{name: getattr(ops, name).poll() for name in ("connect", "launch_backend", "disconnect", "generate",
                    "bake_turntable", "cancel", "export_mesh", "import_mesh", "randomize_seed")}}
        before = polls()
        assert before == dict(connect=True, launch_backend=True, disconnect=False, generate=False, bake_turntable=False,
                              cancel=False, export_mesh=False, import_mesh=False, randomize_seed=True), before
        scene_setup.assert_refused(ops.generate, "connect to a backend first")  # poll() fails, with its reason
        scene.sage_portrait.address = {address!r}
        assert ops.connect() == {{"FINISHED"}}
        after = polls()
        assert all(after[n] for n in ("disconnect", "generate", "bake_turntable", "export_mesh", "import_mesh")), after
        assert not after["cancel"]
        assert ops.generate() == {{"FINISHED"}}
        scene.camera = None
        assert not ops.generate.poll() and not ops.bake_turntable.poll() and ops.export_mesh.poll()
        scene.camera = camera
        scene.sage_portrait.live = True
        assert ops.cancel.poll()
        assert ops.cancel() == {{"FINISHED"}} and not scene.sage_portrait.live and not ops.cancel.poll()
        assert ops.disconnect() == {{"FINISHED"}}
        assert not ops.generate.poll() and not ops.disconnect.poll() and not ops.import_mesh.poll()
        print("OK")
    """)


def test_jobs_resolve_on_the_main_thread_from_the_tick_and_show_progress(run_bpy, address):
    """Headless the timer never fires: call its function, jobs.tick, as Blender would, and check what it does."""
    run_bpy(f"""
        import bpy, re, threading, time, scene_setup
        from blender_addon import jobs, mesh_import, portrait, session, status
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        scene.sage_portrait.address = {address!r}
        bpy.ops.sage.connect()
        state = session.get()
        assert jobs.tick() is None  # idle: the timer would stop
        jobs.stop_ticking()
        fields = portrait.base_fields(scene)
        cameras = [portrait.protocol_camera(scene, camera)] * 24
        threads, frames, errors = [], [], []
        def on_frame(reply):
            threads.append(threading.current_thread())
            if not reply.header.get("done"):
                frames.append(reply.header["frame"])
                job.progress = f"frame {{len(frames)}}/24"
        job = state.submit("turntable", dict(fields, cameras=cameras), on_frame, errors.append, 60.0, "baking 24 frames")
        assert bpy.app.timers.is_registered(jobs.tick)  # submit starts the main-thread timer
        running = []  # the status line after each tick that left the job running with frames in
        while True:
            interval = jobs.tick()
            if frames and not job.done:
                running.append((len(frames), status.status()))
            if interval is None:
                break
            assert interval == jobs.TICK_S
            time.sleep(interval)
        assert job.done and not errors and sorted(frames) == list(range(24))
        assert set(threads) == {{threading.main_thread()}}
        # How many frames one poll brings depends on the load; every line seen while it ran counts them right.
        assert running, "no tick saw the bake running"
        for count, line in running:
            assert re.fullmatch(rf"SAGE: baking 24 frames: frame {{count}}/24, \\d+ s", line), (count, line)
        # A mesh sends one reply at the end: until then the status line counts the seconds.
        mesh_job = state.submit("mesh", mesh_import.mesh_fields(scene, "ply"), lambda r: None, errors.append, 60.0, "mesh, grid 128")
        state.poll()
        assert mesh_job.done or re.fullmatch(r"SAGE: mesh, grid 128: \\d+ s", status.status()), status.status()
        state.wait(mesh_job)  # the synchronous path (scripts, blender -b): the same dispatch, bounded by the timeout
        assert mesh_job.done and not errors and not state.queue.jobs
        # A failing callback fails its job (not the timer) and cancels it on the backend.
        def broken(reply):
            raise ValueError("broken callback")
        bad = state.submit("turntable", dict(fields, cameras=cameras), broken, errors.append, 60.0)
        state.wait(bad)
        assert [str(e) for e in errors] == ["broken callback"] and not state.queue.jobs
        print("OK")
    """)


def test_limits_come_from_hello(run_bpy, address):
    limits = Limits()
    run_bpy(f"""
        import bpy, scene_setup
        from blender_addon import session
        from blender_addon.panel import SAGE_PT_portrait
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        settings = scene.sage_portrait
        settings.address = {address!r}
        bpy.ops.sage.connect()
        state = session.get()
        assert state.info["limits"] == {limits.to_dict()!r}
        # Match Render (the default) draws at the render's size, held to hello's limits, never refused for them.
        from blender_addon import portrait
        assert settings.match_render
        scene.render.resolution_x, scene.render.resolution_y = 3 * {limits.max_resolution}, {limits.max_resolution}
        assert portrait.drawing_resolution(scene) == {limits.max_resolution} and bpy.ops.sage.generate.poll()
        scene.render.resolution_percentage = 25
        assert portrait.drawing_resolution(scene) == round(0.75 * {limits.max_resolution})
        scene.render.resolution_x = scene.render.resolution_y = 8  # 2 px at 25%: the smallest the backend draws
        assert portrait.drawing_resolution(scene) == {limits.min_resolution}
        log = []
        SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
        assert ("label", "{limits.min_resolution} px") in log and ("prop", "resolution") not in log, log
        scene.render.resolution_x = scene.render.resolution_y = 64
        scene.render.resolution_percentage = 100
        settings.match_render = False  # the panel's Resolution: outside the limits it is refused, with why
        settings.resolution = {limits.max_resolution + 1}  # no static maximum clamps it: hello's does
        assert settings.resolution == {limits.max_resolution + 1} and not bpy.ops.sage.generate.poll()
        assert portrait.drawing_resolution(scene) == {limits.max_resolution + 1}
        log = []
        SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
        assert ("label", "resolution {limits.max_resolution + 1} is outside what the backend takes "
                         "({limits.min_resolution}..{limits.max_resolution})") in log, log
        settings.resolution = 64
        # A frame far wider (or taller) than the backend draws: refused before it asks, the panel says why and how.
        for size, words in (((2000, 100), "is 20 times as wide as it is tall"), ((64, 1000), "is 16 times as tall as it is wide")):
            scene.render.resolution_x, scene.render.resolution_y = size
            scene_setup.assert_refused(bpy.ops.sage.generate, words)
            scene_setup.assert_refused(bpy.ops.sage.bake_turntable, "change the render size")
            log = []
            SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
            assert any(kind == "label" and words in text for kind, text in log), log
        scene.render.resolution_x = scene.render.resolution_y = 64
        settings.mesh_grid = {limits.min_grid - 1}
        assert not bpy.ops.sage.import_mesh.poll() and bpy.ops.sage.generate.poll()
        settings.mesh_grid = 32
        # A backend with a smaller table: the add-on follows what hello said, and keys nothing.
        state.info["limits"]["max_cameras"] = 3
        settings.turntable_frames = 4
        scene_setup.assert_refused(bpy.ops.sage.bake_turntable, "cameras 4 is outside what the backend takes (at most 3)")
        assert camera.animation_data is None
        settings.turntable_frames = 3
        assert bpy.ops.sage.bake_turntable() == {{"FINISHED"}}
        print("OK")
    """)


def _install_extension(run_bpy, tmp_path) -> Path:
    """Build the extension without wheels and install it (not enabled) into the test's Blender user folder."""
    assert build_addon.main(["--no-wheels", "--out", str(tmp_path / "dist")]) == 0
    run_bpy(f"""
        import bpy
        result = bpy.ops.extensions.package_install_files(
            filepath={str(tmp_path / "dist" / "sage_portrait-0.1.0-no-wheels.zip")!r}, repo="user_default", enable_on_install=False)
        assert result == {{"FINISHED"}} and {EXTENSION!r} not in bpy.context.preferences.addons
        print("OK")
    """)
    return tmp_path / "blender_user" / "extensions" / "user_default" / "sage_portrait"


def test_batch_enables_the_installed_extension_and_builds_the_demo_scene(run_bpy, bpy_python, address, tmp_path):
    installed = _install_extension(run_bpy, tmp_path)
    run_bpy(f"""
        import bpy, os
        assert not hasattr(bpy.types.Scene, "sage_portrait")  # installed, not enabled: what `blender -b` gives
        from {EXTENSION} import batch
        batch.main(["--out", "demo", "--address", {address!r}, "--demo-scene", "3", "--resolution", "64", "--timeout", "120"])
        assert sorted(os.listdir("demo")) == [f"line_0_{{f:04d}}_{{k}}.png" for f in (1, 2, 3) for k in ("drawing", "labels", "semantic")]
        assert hasattr(bpy.types.Scene, "sage_portrait") and bpy.data.scenes["SAGE Demo"].frame_end == 3
        print("OK")
    """)
    (installed / "props.py").unlink()  # a broken install: the batch says what to do in one line
    result = subprocess.run([str(bpy_python), "-c", textwrap.dedent(f"""
        import bpy
        from {EXTENSION} import batch
        batch.main(["--out", "never", "--address", {address!r}])
    """)], cwd=tmp_path, env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user")),
        capture_output=True, text=True, timeout=240)
    lines = [line for line in result.stderr.splitlines() if line.startswith("SAGE batch failed")]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert f"could not enable the add-on '{EXTENSION}'" in lines[0] and "Preferences > Add-ons" in lines[0], lines
    assert not (tmp_path / "never").exists()


def test_without_pyzmq_the_extension_enables_and_says_how_to_install_it(run_bpy, bpy_python, address, tmp_path):
    _install_extension(run_bpy, tmp_path)
    no_zmq = site_without_zmq(bpy_python, tmp_path / "site-without-zmq")  # Blender's Python without pyzmq
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(no_zmq)!r}, {str(REPO / "tests" / "addon")!r}, {str(REPO)!r}]  # scene_setup imports the source
        import importlib.util
        assert importlib.util.find_spec("zmq") is None
        import bpy, scene_setup
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.preferences.addon_enable(module={EXTENSION!r})
        assert hasattr(bpy.types.Scene, "sage_portrait")  # enabled, no traceback
        from {EXTENSION}.panel import SAGE_PT_portrait
        log = []
        SAGE_PT_portrait.draw(type("P", (), {{"layout": scene_setup.StandInLayout(log)}})(), bpy.context)
        labels = [text for kind, text in log if kind == "label"]
        assert "pyzmq is not installed in Blender's Python" in labels, labels
        assert any(sys.executable + " -m pip install pyzmq" in text for text in labels), labels
        assert not bpy.ops.sage.connect.poll() and not bpy.ops.sage.generate.poll()
        from {EXTENSION} import batch
        batch.main(["--out", "never", "--address", {address!r}])
    """)
    result = subprocess.run([str(bpy_python), "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                            env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user")))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("SAGE batch failed")]
    assert failed == [f"SAGE batch failed: pyzmq is not installed in Blender's Python: install the extension zip that bundles "
                      f"it (python build_addon.py), or run: {bpy_python} -m pip install pyzmq"], result.stderr
