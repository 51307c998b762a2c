"""The add-on against a backend that encrypts (CURVE, `serve --curve-secret --curve-clients`): its key reader
refuses and accepts exactly the files the backend's does; a listed key connects and draws, an unlisted key,
a missing or wrong server key and CURVE on one side only each fail at once with one line naming the key to
fix; the session rebuilds its client when the keys change; the keys work from the add-on preferences and
from the batch's flags inside bpy."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from blender_addon import curve
from blender_addon.client import BackendUnavailable, Client
from blender_addon.session import Session
from sage_backend.server import curve as backend_curve
from tests.conftest import start_backend, stop_backend


@dataclass
class Keys:
    folder: Path  # server.key(_secret), alice.key_secret (listed), bob.key_secret (not listed)
    allowed: Path  # the backend's --curve-clients folder: alice.key


def make_keys(root: Path) -> Keys:
    backend_curve.write_keypair(root, "server")
    allowed = root / "clients"
    allowed.mkdir()
    for name in ("alice", "bob"):
        public, _ = backend_curve.write_keypair(root, name)
        if name == "alice":
            public.rename(allowed / public.name)
    return Keys(root, allowed)


@pytest.fixture(scope="module")
def curve_backend(tmp_path_factory, tiny_checkpoint_dir):
    """A real backend with CURVE and an allow-list holding alice.key only; yields (address, Keys)."""
    keys = make_keys(tmp_path_factory.mktemp("curve"))
    server = start_backend(tiny_checkpoint_dir, extra=("--curve-secret", str(keys.folder / "server.key_secret"),
                                                       "--curve-clients", str(keys.allowed)))
    yield server.address, keys
    stop_backend(server)


def key_files(root: Path) -> dict[str, Path]:
    """Good and bad key files, as an artist might pick them."""
    backend_curve.write_keypair(root, "good")
    backend_curve.write_keypair(root, "other")
    files = {"public": root / "good.key", "secret": root / "good.key_secret", "missing": root / "nothing.key"}
    files["mismatched"] = root / "mismatched.key_secret"  # good's public half with other's secret half
    public_line = next(line for line in files["public"].read_text().splitlines() if "public-key" in line)
    secret_text = (root / "other.key_secret").read_text()
    other_public = next(line for line in secret_text.splitlines() if "public-key" in line)
    files["mismatched"].write_text(secret_text.replace(other_public, public_line))
    files["shared"] = root / "shared.key_secret"  # readable by everyone
    files["shared"].write_bytes(files["secret"].read_bytes())
    files["shared"].chmod(0o644)
    files["text"] = root / "notes.key"
    files["text"].write_text("just some notes\n")
    files["short"] = root / "short.key"
    files["short"].write_text('curve\n    public-key = "abc"\n')
    files["binary"] = root / "image.key"
    files["binary"].write_bytes(bytes(range(256)) * 4)
    for path in files.values():
        if path.exists() and path.name.endswith("_secret") and path != files["shared"]:
            path.chmod(0o600)
    return files


def outcome(read, path: Path):
    try:
        return read(path)
    except ValueError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), exc  # one line that names the file
        return "refused"


def test_the_addon_refuses_and_accepts_the_key_files_the_backend_does(tmp_path) -> None:
    files = key_files(tmp_path)
    for name, path in files.items():
        for addon_read, backend_read in ((curve.read_public_key, backend_curve.read_public_key),
                                         (curve.read_secret_key, backend_curve.read_secret_key)):
            assert outcome(lambda p: addon_read(str(p)), path) == outcome(backend_read, path), (name, addon_read.__name__)
    public, secret = curve.read_secret_key(str(files["secret"]))
    assert zmq.curve_public(secret) == public == curve.read_public_key(str(files["public"]))
    refusals = {"public": "this is a public key", "mismatched": "do not belong together", "shared": "run chmod 600",
                "text": "not a CURVE certificate", "short": "not a CURVE certificate", "binary": "not a CURVE certificate",
                "missing": "cannot read the CURVE key"}
    for name, reason in refusals.items():
        with pytest.raises(ValueError, match=reason):
            curve.read_secret_key(str(files[name]))
    with pytest.raises(ValueError, match="no Server Key"):
        curve.load_keys("", str(files["secret"]))
    assert curve.load_keys("", "") is None
    keys = curve.load_keys(str(files["public"]), str(files["secret"]))
    assert keys.server == public and keys.client == (public, secret) and keys.client_public_file == "good.key"


def hello_error(address: str, keys: curve.CurveKeys | None) -> str:
    """The add-on client's error for a hello that must fail (60 s timeout: a refusal must come before it)."""
    client = Client(address, 60.0, keys)
    try:
        with pytest.raises(BackendUnavailable) as failure:
            client.hello()
    finally:
        client.close()
    return str(failure.value)


def test_a_listed_key_draws_and_every_wrong_key_fails_at_once_with_one_line(curve_backend, backend) -> None:
    address, keys = curve_backend
    server_key = str(keys.folder / "server.key")
    alice = curve.load_keys(server_key, str(keys.folder / "alice.key_secret"))
    client = Client(address, 60.0, alice)
    try:
        assert client.hello().header["protocol"] == 1
        reply = client.request("generate", {"style": "line", "seed": 1, "resolution": 64, "camera": {"yaw": 1.5, "pitch": 1.57}})
        assert reply.blobs["drawing"].shape == (64, 64, 3)
    finally:
        client.close()
    # Not on the allow-list: the refusal names the file to add, long before the 60 s timeout.
    bob = curve.load_keys(server_key, str(keys.folder / "bob.key_secret"))
    assert hello_error(address, bob) == f"the backend at {address} refused this add-on's CURVE key: add bob.key to its --curve-clients folder"
    assert "set NAME.key_secret as the Client Key" in hello_error(address, curve.load_keys(server_key))  # a throwaway key
    # The wrong server key, no server key, and a server key for a plain backend.
    wrong = curve.load_keys(str(keys.allowed / "alice.key"), str(keys.folder / "alice.key_secret"))
    assert "the Server Key is likely not its server.key" in hello_error(address, wrong)
    for _ in range(3):  # the backend may close before the mechanisms are compared: both ways name the key
        assert "uses CURVE encryption: set its public key (server.key) as the Server Key" in hello_error(address, None)
        assert "does not use CURVE encryption but a Server Key is set" in hello_error(backend.address, alice)


def test_a_request_after_a_failed_handshake_names_the_key_not_a_full_queue(curve_backend) -> None:
    """libzmq leaves no connection after a mechanism mismatch, so a later send finds nowhere to queue the request:
    it said "queue full" (and the backend's own client blocked forever there)."""
    address, _ = curve_backend
    client = Client(address, 60.0, None)
    try:
        deadline = time.monotonic() + 15
        while not client._handshake_error and time.monotonic() < deadline:
            client._connection_events()
            time.sleep(0.05)
        time.sleep(0.5)  # the disconnection too
        with pytest.raises(BackendUnavailable, match="uses CURVE encryption: set its public key"):
            client.hello()
    finally:
        client.close()


def test_the_session_rebuilds_its_client_when_the_keys_change(curve_backend) -> None:
    address, keys = curve_backend
    server_key = str(keys.folder / "server.key")
    state = Session()
    try:
        bob = state.ensure_client(address, 5.0, curve.load_keys(server_key, str(keys.folder / "bob.key_secret")))
        assert state.ensure_client(address, 5.0, curve.load_keys(server_key, str(keys.folder / "bob.key_secret"))) is bob
        info = state.connect(address, 30.0, curve.load_keys(server_key, str(keys.folder / "alice.key_secret")))
        assert state.client is not bob and bob.closed and info["protocol"] == 1
        throwaway = state.ensure_client(address, 5.0, curve.load_keys(server_key))
        assert throwaway is not state.ensure_client(address, 5.0, None)
    finally:
        state.shutdown()


def test_keys_from_the_preferences_and_the_batch_flags_inside_blender(run_bpy, curve_backend, tmp_path) -> None:
    address, keys = curve_backend
    run_bpy(f"""
        import os, addon_utils, bpy, scene_setup
        from blender_addon import batch, panel, session
        addon_utils.enable("blender_addon", default_set=True)  # through Blender's add-on system: preferences exist
        prefs = bpy.context.preferences.addons["blender_addon"].preferences
        scene, camera, pivot = scene_setup.portrait_scene(resolution=64, register=False)
        scene.sage_portrait.address = {address!r}
        scene_setup.assert_refused(bpy.ops.sage.connect, "uses CURVE encryption: set its public key (server.key)")
        prefs.server_key = {str(keys.folder / "server.key")!r}
        prefs.client_key = {str(keys.folder / "server.key")!r}
        scene_setup.assert_refused(bpy.ops.sage.connect, "server.key: this is a public key")
        prefs.client_key = {str(keys.folder / "bob.key_secret")!r}
        scene_setup.assert_refused(bpy.ops.sage.connect, "add bob.key to its --curve-clients folder")
        prefs.client_key = {str(keys.folder / "alice.key_secret")!r}
        assert bpy.ops.sage.connect() == {{"FINISHED"}}
        assert bpy.ops.sage.generate() == {{"FINISHED"}}
        log = []
        panel.draw_security(scene_setup.StandInLayout(log), prefs)
        assert log == [("label", "CURVE: server.key, as alice.key_secret")], log
        prefs.server_key = prefs.client_key = ""
        session.shutdown()
        scene.frame_start = scene.frame_end = 1
        batch.main(["--out", "out", "--server-key", {str(keys.folder / "server.key")!r},
                    "--client-key", {str(keys.folder / "alice.key_secret")!r}, "--timeout", "60"])
        assert len(os.listdir("out")) == 3
        try:  # a key off the allow-list: the batch exits with its one line (stderr) at once
            batch.main(["--out", "never", "--server-key", {str(keys.folder / "server.key")!r},
                        "--client-key", {str(keys.folder / "bob.key_secret")!r}, "--timeout", "60"])
        except SystemExit as exc:
            assert exc.code == 1
        else:
            raise AssertionError("the batch ran with a key the backend refuses")
        print("OK")
    """)
