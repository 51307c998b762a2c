"""The server over real sockets on loopback, driven by a plain DEALER client written from PROTOCOL.md."""
from __future__ import annotations

import json
import math
import random
import signal
import time
import uuid

import numpy as np
import pytest
import zmq

from tests.conftest import start_backend, stop_backend

pytestmark = pytest.mark.usefixtures("serve_mode")  # every test against each way of serving (tests/conftest.py)

FRONT = {"yaw": math.pi / 2, "pitch": math.pi / 2}


class Client:
    """What any third-party client would write: DEALER, multipart [b"SAGE/1", header, *blobs]."""

    def __init__(self, address: str, server_key: bytes | None = None) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if server_key is not None:
            pub, sec = zmq.curve_keypair()
            self.socket.curve_publickey, self.socket.curve_secretkey, self.socket.curve_serverkey = pub, sec, server_key
        self.socket.connect(address)

    def send(self, op: str, blobs=(), **fields) -> str:
        rid = fields.pop("id", uuid.uuid4().hex[:12])
        self.socket.send_multipart([b"SAGE/1", json.dumps({"id": rid, "op": op, **fields}).encode(), *blobs])
        return rid

    def recv(self, timeout: float = 30.0) -> tuple[dict, list[bytes]]:
        if not self.socket.poll(int(timeout * 1000)):
            raise TimeoutError
        frames = self.socket.recv_multipart()
        assert frames[0] == b"SAGE/1"
        return json.loads(frames[1]), frames[2:]

    def call(self, op: str, blobs=(), **fields) -> tuple[dict, list[bytes]]:
        rid = self.send(op, blobs, **fields)
        header, blobs = self.recv()
        assert header["id"] == rid
        return header, blobs

    def close(self) -> None:
        self.socket.close(0)


@pytest.fixture()
def client(backend):
    c = Client(backend.address)
    yield c
    c.close()


def test_hello_reports_protocol_styles_labels_and_limits(client: Client) -> None:
    header, _ = client.call("hello", client="pytest")
    assert header["ok"] and header["protocol"] == 1 and header["device"] == "cpu"
    assert [s["name"] for s in header["styles"]] == ["line", "pencil"]
    assert len(header["labels"]) == 19 and header["labels"][4] == "l_eye" and len(header["palette"]) == 19
    assert header["limits"]["max_cameras"] == 720 and header["limits"]["max_grid"] == 512
    # Each style says which poses it trained on (these tiny checkpoints carry no record: the reference's).
    from sage_backend.cameras import REFERENCE_POSES
    for style in header["styles"]:
        assert style["poses"] == {**REFERENCE_POSES.pose_range(), "full_circle": False}
        assert style["psi"] == 0.5  # a checkpoint that records no psi is served at DEFAULT_PSI
    assert client.call("ping")[0]["ok"]


def test_a_wide_shifted_camera_gets_a_frame_of_its_aspect(client: Client) -> None:
    camera = dict(FRONT, radius=2.0, fov_deg=39.6, shift=[0.1, -0.05], aspect=2.0)
    header, blobs = client.call("generate", style="line", seed=1, camera=camera, resolution=64)
    assert header["ok"], header
    assert {b["name"]: b["shape"] for b in header["blobs"]} == {"drawing": [32, 64, 3], "semantic": [32, 64]}
    bad, _ = client.call("generate", style="line", seed=1, camera=dict(camera, shift=[0.1]), resolution=64)
    assert bad["error"] == {"code": "bad_request", "message": "camera.shift must be 2 numbers [x, y]"}
    bad, _ = client.call("generate", style="line", seed=1, camera=dict(camera, aspect=0.0), resolution=64)
    assert bad["error"]["message"] == "camera.aspect must lie in 0.1..10"


def test_generate_returns_drawing_semantic_and_depth(client: Client) -> None:
    header, blobs = client.call("generate", style="pencil", seed=3, camera=FRONT, resolution=64, outputs=["drawing", "semantic", "depth"])
    assert header["ok"], header
    shapes = {b["name"]: (b["dtype"], b["shape"]) for b in header["blobs"]}
    assert shapes == {"drawing": ("uint8", [64, 64, 3]), "semantic": ("uint8", [64, 64]), "depth": ("float32", [64, 64])}
    semantic = np.frombuffer(blobs[1], np.uint8)
    depth = np.frombuffer(blobs[2], np.float32)
    assert semantic.max() < 19 and np.isfinite(depth).all() and 0.8 < depth.min() <= depth.max() < 1.2
    again, blobs2 = client.call("generate", style="pencil", seed=3, camera=FRONT, resolution=64)
    assert blobs2[0] == blobs[0]  # same seed, same drawing


def test_strokes_output_traces_the_frame_it_would_draw(client: Client) -> None:
    from sage_backend.labels import PART_NAMES
    from sage_backend.strokes import trace_strokes

    header, blobs = client.call("generate", style="line", seed=2, camera=FRONT, resolution=64, outputs=["drawing", "semantic", "strokes"])
    assert header["ok"], header
    drawing = np.frombuffer(blobs[0], np.uint8).reshape(64, 64, 3)
    semantic = np.frombuffer(blobs[1], np.uint8).reshape(64, 64)
    desc, info = header["blobs"][2], header["strokes"]
    points = np.frombuffer(blobs[2], np.float32).reshape(desc["shape"])
    expected = trace_strokes(drawing, semantic)  # the server traces the very frame it sends
    assert desc["name"] == "strokes" and points.shape == expected.points.shape and np.array_equal(points, expected.points)
    assert info["lengths"] == expected.lengths.tolist() and info["parts"] == expected.parts.tolist() and sum(info["lengths"]) == len(points)
    assert info["part_names"] == list(PART_NAMES) and info["source"] == expected.source and info["dropped"] == 0 and info["size"] == [64, 64]
    assert np.all((points[:, :2] >= 0) & (points[:, :2] <= 64)) and np.all(points[:, 2] >= 1)
    only, blobs = client.call("generate", style="line", seed=2, camera=FRONT, resolution=64, outputs=["strokes"], trace="parts")
    assert [b["name"] for b in only["blobs"]] == ["strokes"] and only["strokes"]["source"] == "parts"
    bad, _ = client.call("generate", style="line", seed=2, camera=FRONT, outputs=["strokes"], trace="oil")
    assert bad["error"] == {"code": "bad_request", "message": "trace must be one of auto, ink, parts"}
    rid = client.send("turntable", style="line", seed=2, cameras=[FRONT, dict(FRONT, yaw=2.0)], resolution=64, outputs=["strokes"])
    replies = [client.recv() for _ in range(3)]
    assert [h["id"] for h, _ in replies] == [rid] * 3 and replies[2][0]["done"]
    for header, blobs in replies[:2]:  # every frame its own strokes
        assert sum(header["strokes"]["lengths"]) * 12 == len(blobs[0])
    hello, _ = client.call("hello", client="pytest")
    assert hello["limits"]["max_stroke_points"] == 20_000 and hello["limits"]["max_strokes"] == 2_000


def test_latent_blob_and_cam2world_camera(client: Client) -> None:
    latent = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    c2w = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.0], [0, 0, 0, 1]]
    header, blobs = client.call("generate", [latent.tobytes()], style="line", camera={"cam2world": c2w, "fov_deg": 12}, resolution=64)
    assert header["ok"] and len(blobs) == 2
    bad, _ = client.call("generate", [b"\0" * 12], style="line", camera=FRONT)
    assert bad["error"]["code"] == "bad_request" and "latent" in bad["error"]["message"]


def test_turntable_streams_frames_then_done(client: Client) -> None:
    cams = [{"yaw": math.pi / 2 + 0.3 * i, "pitch": math.pi / 2} for i in range(5)]
    rid = client.send("turntable", style="pencil", seed=1, cameras=cams, resolution=64)
    frames = []
    while True:
        header, blobs = client.recv()
        assert header["id"] == rid and header["ok"]
        if header.get("done"):
            break
        frames.append((header["frame"], blobs[0]))
    assert [f for f, _ in frames] == list(range(5)) and len({b for _, b in frames}) == 5


def test_part_styles_compose_a_drawing_and_bad_ones_are_one_line(client: Client) -> None:
    fields = dict(style="line", seed=1, camera=FRONT, resolution=64)
    plain, _ = client.call("generate", **fields)
    mixed, blobs = client.call("generate", **fields, part_styles={"hair": "pencil", "skin": "pencil"})
    assert plain["ok"] and mixed["ok"] and [b["name"] for b in mixed["blobs"]] == ["drawing", "semantic"] and len(blobs[0]) == 64 * 64 * 3
    for value, message in (({"beard": "line"}, "part_styles: unknown part 'beard'"), ({"hair": "oil"}, "part_styles: unknown style 'oil'"),
                           ("hair=pencil", "part_styles must be a non-empty object")):
        bad, _ = client.call("generate", **fields, part_styles=value)
        assert bad["error"]["code"] == "bad_request" and bad["error"]["message"].startswith(message), bad


def test_mesh_op_returns_a_file(client: Client) -> None:
    header, blobs = client.call("mesh", style="pencil", seed=1, grid=32, format="ply", colors="semantic")
    assert header["ok"] and header["vertices"] > 0 and header["blobs"][0]["format"] == "ply" and blobs[0].startswith(b"ply")
    header, blobs = client.call("mesh", style="pencil", seed=1, grid=32, format="glb", colors="drawing")
    assert header["ok"] and blobs[0][:4] == b"glTF"
    # An OBJ comes with its material library, named as the request's `name` asks (the file the client writes).
    header, blobs = client.call("mesh", style="pencil", seed=1, grid=32, format="obj", name="alice head")
    assert [(b["name"], b["format"]) for b in header["blobs"]] == [("mesh", "obj"), ("mtl", "mtl")]
    assert b"\nmtllib alice head.mtl\n" in blobs[0] and blobs[1].startswith(b"# SAGE Portrait parts") and b"newmtl skin" in blobs[1]
    bad, _ = client.call("mesh", style="pencil", seed=1, grid=8)
    assert bad["error"]["code"] == "bad_request" and "grid" in bad["error"]["message"]
    for name in ("../x", "", 5, ".hidden"):
        bad, _ = client.call("mesh", style="pencil", seed=1, grid=32, format="obj", name=name)
        assert bad["error"]["code"] == "bad_request" and bad["error"]["message"].startswith("name "), name


@pytest.mark.parametrize("fields, code", [
    ({"style": "oil", "seed": 1, "camera": FRONT}, "unknown_style"),
    ({"style": "line", "seed": 1, "camera": FRONT, "resolution": 4096}, "bad_request"),
    ({"style": "line", "seed": 1, "camera": {"yaw": float("nan")}}, "bad_request"),
    ({"style": "line", "camera": FRONT}, "bad_request"),
    ({"style": "line", "seed": 1, "camera": {"cam2world": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]}}, "bad_request"),
])
def test_bad_requests_get_one_clear_error(client: Client, fields, code) -> None:
    header, _ = client.call("generate", **fields) if "nan" not in str(fields) else _raw_nan(client, fields)
    assert not header["ok"] and header["error"]["code"] == code and header["error"]["message"]


def _raw_nan(client: Client, fields) -> tuple[dict, list[bytes]]:
    client.socket.send_multipart([b"SAGE/1", json.dumps({"id": "nan", "op": "generate", **fields}).encode()])  # json emits NaN
    return client.recv()


def test_too_many_cameras_is_too_large(client: Client) -> None:
    header, _ = client.call("turntable", style="line", seed=1, cameras=[FRONT] * 721)
    assert header["error"]["code"] == "too_large"


def test_cancel_mid_turntable(client: Client) -> None:
    cams = [FRONT] * 200
    rid = client.send("turntable", style="pencil", seed=1, cameras=cams, resolution=256)
    client.recv()  # the first frame is out: the job is running
    cancel_id = client.send("cancel", target=rid)
    seen_cancelled = seen_ack = False
    for _ in range(400):
        header, _ = client.recv()
        if header["id"] == cancel_id:
            seen_ack = header["ok"] and header["found"]
        elif not header["ok"]:
            assert header["error"]["code"] == "cancelled"
            seen_cancelled = True
        else:
            assert not header.get("done")
        if seen_ack and seen_cancelled:
            break
    assert seen_ack and seen_cancelled


def test_deadline_expires_with_timeout(client: Client) -> None:
    header, _ = client.call("turntable", style="pencil", seed=1, cameras=[FRONT] * 400, resolution=512, deadline_ms=50)
    while header["ok"]:
        header, _ = client.recv()
    assert header["error"]["code"] == "timeout"


def test_two_clients_get_only_their_own_replies(backend) -> None:
    a, b = Client(backend.address), Client(backend.address)
    try:
        ra = a.send("generate", id="same-id", style="line", seed=1, camera=FRONT, resolution=64)
        rb = b.send("generate", id="same-id", style="pencil", seed=2, camera=FRONT, resolution=64)
        ha, _ = a.recv()
        hb, _ = b.recv()
        assert ha["style"] == "line" and hb["style"] == "pencil" and ra == rb
        with pytest.raises(TimeoutError):
            a.recv(timeout=0.3)
    finally:
        a.close()
        b.close()


def _logged_status(backend, op: str, rid: str, wait_s: float = 120.0) -> str:
    """The status the server logged for request `rid` (waits for the request to end)."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        for line in backend.log.read_text().splitlines():
            if f" {op} id={rid} " in line:
                return line.split()[-1]
        time.sleep(0.05)
    raise TimeoutError(f"no log line for {op} {rid}")


def test_client_that_vanishes_mid_turntable_gets_its_work_cancelled(backend) -> None:
    gone = Client(backend.address)
    # Enough work (720 frames of 3 MB) that it cannot finish before the server notices the client is gone.
    rid = gone.send("turntable", style="pencil", seed=1, cameras=[FRONT] * 720, resolution=1024)
    gone.recv()
    gone.close()
    other = Client(backend.address)
    try:
        assert other.call("ping")[0]["ok"]
        assert _logged_status(backend, "turntable", rid) == "cancelled"  # not rendered to the end for nobody
        assert other.call("generate", style="line", seed=1, camera=FRONT, resolution=64)[0]["ok"]
    finally:
        other.close()


def test_an_id_already_in_flight_is_refused(client: Client) -> None:
    client.send("turntable", id="dup", style="pencil", seed=1, cameras=[FRONT] * 100, resolution=256)
    client.send("generate", id="dup", style="line", seed=1, camera=FRONT)
    client.send("cancel", id="stop", target="dup")
    replies = []
    while not any(h["id"] == "dup" and not h["ok"] and h["error"]["code"] == "cancelled" for h in replies):
        replies.append(client.recv()[0])
    refused = [h for h in replies if h["id"] == "dup" and not h["ok"] and h["error"]["code"] == "bad_request"]
    assert len(refused) == 1 and "already in flight" in refused[0]["error"]["message"]


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def test_fuzz_thousand_hostile_messages_then_hello(backend, tiny_checkpoint_dir) -> None:
    rng = random.Random(1234)
    c = Client(backend.address)
    try:
        c.call("hello")
        rss_before = _rss_kb(backend.process.pid)
        junk_values = [None, True, -1, 2**70, 1e308, float("inf"), "x" * 70, [], {}, [1, "a"], {"yaw": "1"}]
        big, huge = b"1" + b"0" * 400, b"9" * 5000
        hostile_headers = [
            b'{"id":"h","op":"generate","style":"line","seed":' + big + b',"camera":{}}',
            b'{"id":"h","op":"generate","style":"line","seed":' + huge + b'}',
            b'{"id":"h","op":"turntable","style":"line","seed":1,"psi":' + big + b',"cameras":[{}]}',
            b'{"id":"h","op":"generate","style":"line","seed":1,"camera":{"yaw":' + big + b'}}',
            b'{"id":"h","op":"generate","style":"line","seed":1,"camera":{"cam2world":[[-' + big + b',0,0,0]]}}',
            b'{"id":"h","op":"mesh","style":"line","seed":1,"grid":' + big + b'}',
            b'{"id":"h","op":"cancel","target":' + b"[" * 20000 + b"]" * 20000 + b'}',
            b"[" * 20000,
        ]
        sent = 0
        for i in range(1200):
            kind = rng.randrange(9)
            if kind == 0:
                frames = [rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(0, 5))]
            elif kind == 1:
                frames = [b"SAGE/1"]
            elif kind == 2:
                frames = [b"SAGE/1", rng.randbytes(rng.randrange(1, 200))]
            elif kind == 3:
                frames = [b"SAGE/2", b"{}"]
            elif kind == 4:
                frames = [b"SAGE/1", json.dumps(rng.choice(junk_values[:10])).encode()]
            elif kind == 8:  # numbers and nesting that break naive parsers: 400- and 5000-digit ints, depth 20,000
                frames = [b"SAGE/1", rng.choice(hostile_headers)]
            else:
                header = {"id": rng.choice([f"f{i}", None, 5, "x" * 65]), "op": rng.choice(["generate", "turntable", "mesh", "cancel", "nope", 3])}
                for key in rng.sample(["style", "seed", "camera", "cameras", "psi", "resolution", "outputs", "grid", "format", "target", "latent"], 4):
                    header[key] = rng.choice(junk_values + ["line", 1, FRONT])
                frames = [b"SAGE/1", json.dumps(header, allow_nan=True).encode(), *[rng.randbytes(8) for _ in range(rng.randrange(0, 3))]]
            if not frames:
                frames = [b""]
            c.socket.send_multipart(frames)
            sent += 1
        c.socket.send_multipart([b"SAGE/1", b"{}", b"\0" * (100 * 1024 * 1024)])  # over disconnect_bytes: ZeroMQ closes this connection
        time.sleep(1.0)
        while c.socket.poll(200):
            c.socket.recv_multipart()
        fresh = Client(backend.address)
        try:
            header, _ = fresh.call("hello")
            assert header["ok"] and header["protocol"] == 1 and sent >= 1000
        finally:
            fresh.close()
        assert backend.process.poll() is None
        assert _rss_kb(backend.process.pid) - rss_before < 200 * 1024  # no unbounded growth (100 MB frame not kept)
    finally:
        c.close()


def test_startup_names_each_style_as_it_gets_ready(backend, tiny_checkpoint_dir) -> None:
    """A server (or its workers) prints a line per style as its decoders are readied, before the endpoint line: on a
    2-core CPU that takes 3-4 s a style, and a silent 15 s start looks hung."""
    styles = sorted(p.stem for p in tiny_checkpoint_dir.glob("*.safetensors"))
    log = backend.log.read_text()
    for number, name in enumerate(styles, 1):
        assert f"style {number}/{len(styles)} {name}: decoders in " in log, log[:2000]


def test_curve_without_the_key_gets_nothing(tmp_path, tiny_checkpoint_dir) -> None:
    from sage_backend.cli import main

    from sage_backend.server.curve import read_public_key

    assert main(["keys", "--out", str(tmp_path)]) == 0
    public = read_public_key(tmp_path / "server.key")
    server = start_backend(tiny_checkpoint_dir, extra=("--curve-secret", str(tmp_path / "server.key_secret")))
    try:
        plain = Client(server.address)
        plain.send("hello")
        with pytest.raises(TimeoutError):
            plain.recv(timeout=1.0)
        plain.close()
        secure = Client(server.address, server_key=public)
        assert secure.call("hello")[0]["ok"]
        secure.close()
    finally:
        stop_backend(server)


def test_a_request_without_psi_renders_at_the_styles_own(tiny_checkpoint_dir, tmp_path) -> None:
    """A style released at psi 0.8 (StyleInfo.psi): hello says so, and a request naming no psi renders
    exactly what psi 0.8 renders, in the server and through its workers (the pool forwards the value)."""
    from dataclasses import replace

    from sage_backend.checkpoint import load_generator, save_generator

    loaded = load_generator(tiny_checkpoint_dir / "line.safetensors")
    save_generator(tmp_path / "line.safetensors", loaded.generator, replace(loaded.info, psi=0.8))
    server = start_backend(tmp_path)
    c = Client(server.address)
    try:
        assert [(s["name"], s["psi"]) for s in c.call("hello")[0]["styles"]] == [("line", 0.8)]
        drawing = {psi: c.call("generate", style="line", seed=4, camera=FRONT, resolution=64,
                               **({} if psi is None else {"psi": psi}))[1][0] for psi in (None, 0.8, 0.5)}
        assert drawing[None] == drawing[0.8] != drawing[0.5]
    finally:
        c.close()
        stop_backend(server)


def test_non_loopback_bind_needs_curve_or_insecure(tiny_checkpoint_dir, capsys) -> None:
    from sage_backend.cli import main

    assert main(["serve", "--bind", "tcp://0.0.0.0:0", "--styles", str(tiny_checkpoint_dir)]) == 2
    assert "--curve-secret" in capsys.readouterr().err


def test_sigterm_during_work_answers_cancelled_and_exits_zero(tiny_checkpoint_dir) -> None:
    server = start_backend(tiny_checkpoint_dir)
    c = Client(server.address)
    try:
        rid = c.send("turntable", style="pencil", seed=1, cameras=[FRONT] * 300, resolution=256)
        c.recv()
        server.process.send_signal(signal.SIGTERM)
        codes = []
        for _ in range(400):
            header, _ = c.recv()
            if not header["ok"]:
                codes.append(header["error"]["code"])
                break
        assert codes == ["cancelled"]
        assert server.process.wait(30) == 0
    finally:
        c.close()
        if server.process.poll() is None:
            server.process.kill()
