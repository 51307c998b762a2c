"""The add-on's client notices a backend that dies mid-request: the headless batch fails with one line within
seconds of the kill, not after its --timeout."""
import threading
import time

from conftest import free_port, start_real_backend


def test_batch_reports_a_killed_backend_within_5_s(run_bpy, tmp_path, tiny_checkpoint_dir):
    address = f"tcp://127.0.0.1:{free_port()}"
    backend = start_real_backend(address, str(tiny_checkpoint_dir))
    script = f"""
        import os, sys, time, io, contextlib, scene_setup
        from blender_addon import batch
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64)
        scene.frame_start, scene.frame_end = 1, 100  # the request header stays under 64 KiB
        for frame in (1, 100):
            camera.location.x = 0.001 * frame
            camera.keyframe_insert("location", frame=frame)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                batch.main(["--out", "out", "--address", {address!r}, "--timeout", "120"])
            except SystemExit as exc:
                assert exc.code == 1
            else:
                raise AssertionError("the batch finished although its backend was killed")
        failed = time.time()
        line = err.getvalue().strip()
        for _ in range(200):
            if os.path.exists("killed"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the batch failed before its backend was killed: {{line}}")
        killed = float(open("killed").read())
        assert line.count(chr(10)) == 0 and "closed the connection" in line, line
        print(f"NOTICED {{failed - killed:.2f}}")
    """

    def kill_after_the_first_frame():
        out = tmp_path / "out"
        while not (out.exists() and any(out.iterdir())):
            if backend.poll() is not None:
                return
            time.sleep(0.05)
        backend.kill()
        (tmp_path / "killed.tmp").write_text(repr(time.time()))
        (tmp_path / "killed.tmp").rename(tmp_path / "killed")
        backend.wait()

    killer = threading.Thread(target=kill_after_the_first_frame, daemon=True)
    killer.start()
    try:
        out = run_bpy(script)
    finally:
        backend.kill()
        backend.wait()
        killer.join(5)
    noticed = float(out.split("NOTICED ")[1].split()[0])
    print(f"add-on batch noticed the killed backend after {noticed:.2f} s")
    assert noticed < 5.0  # its --timeout is 120 s
