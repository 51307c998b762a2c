"""What reaches the server from hostile or careless clients, over real ZeroMQ: each kind of bad message gets
its one answer (docs/protocol.md, "Errors"), costs bounded memory, and never costs another request."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from tests.backend.test_server import FRONT, Client, _logged_status, _rss_kb

pytestmark = pytest.mark.usefixtures("serve_mode")


@pytest.fixture()
def client(backend):
    c = Client(backend.address)
    yield c
    c.close()


def test_a_req_socket_gets_its_error_and_can_send_again(backend) -> None:
    """REQ puts an empty delimiter first and drops any reply without one: it gets unsupported_protocol, each time."""
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(backend.address)
    try:
        for op in ("hello", "generate"):
            req.send_multipart([b"SAGE/1", json.dumps({"id": op, "op": op}).encode()])
            assert req.poll(10_000), "REQ got no reply"
            magic, header = req.recv_multipart()
            error = json.loads(header)["error"]
            assert magic == b"SAGE/1" and error["code"] == "unsupported_protocol" and "DEALER" in error["message"]
    finally:
        req.close(0)


def test_a_dealer_that_frames_like_req_gets_the_delimiter_back(client: Client) -> None:
    client.socket.send_multipart([b"", b"SAGE/1", b'{"id":"r","op":"ping"}'])
    assert client.socket.poll(10_000)
    empty, magic, header = client.socket.recv_multipart()
    assert (empty, magic, json.loads(header)["error"]["code"]) == (b"", b"SAGE/1", "unsupported_protocol")
    assert client.call("ping")[0]["ok"]  # nothing else changed for this client


def test_a_key_named_twice_in_a_header_is_refused_not_overwritten(client: Client) -> None:
    """JSON keeps a repeated key's last value silently: a part style named twice drew the last, a seed twice the
    last. Named twice anywhere in the header (its top or any object in it), it is bad_request with the key."""
    for header, key in (('{"id":"d1","op":"generate","style":"line","seed":1,"seed":2}', "seed"),
                        ('{"id":"d2","op":"generate","style":"line","seed":1,"part_styles":{"hair":"line","hair":"pencil"}}', "hair"),
                        ('{"id":"d3","op":"ping","op":"ping"}', "op")):
        client.socket.send_multipart([b"SAGE/1", header.encode()])
        assert client.socket.poll(10_000)
        _, reply = client.socket.recv_multipart()
        error = json.loads(reply)["error"]
        assert error == {"code": "bad_request", "message": f"the header names {key!r} twice in one object"}, error
        assert json.loads(reply)["id"] == header[7:9]
    assert client.call("ping")[0]["ok"]


FORGED = "\n00:00:00 mesh id=admin worker=- 1 ms ok"


@pytest.mark.parametrize("ending", ["\n", "\r", "\u2028", "\x1b[2K", " worker=x 1 ms"])
def test_every_client_chosen_text_reaches_the_log_escaped(backend, client: Client, ending: str) -> None:
    """Ids of every op, answered or refused, and with line breaks of every kind: one log line per request."""
    requests = {
        "ping": {}, "hello": {}, "cancel": {"target": "nothing" + ending},
        "generate": {"style": "line", "seed": 1, "camera": FRONT, "resolution": 64},
        "turntable": {"style": "line", "seed": 1, "cameras": [FRONT], "resolution": 64},
        "mesh": {"style": "line", "seed": 1, "grid": 32},
    }
    sent = []
    for op, fields in requests.items():
        sent.append((op, client.send(op, id=f"{op}{ending}{FORGED}"[:64], **fields)))
    bad = client.send("generate", id=f"bad{ending}{FORGED}"[:64], style="oil" + ending, seed=1, camera=FRONT)
    for op, rid in [*sent, ("generate", bad)]:
        escaped = rid.encode("unicode_escape").decode().replace(" ", "\\x20")
        _logged_status(backend, op, escaped)
    log = backend.log.read_text()
    assert not any(line.startswith("00:00:00") for line in log.splitlines())
    assert not any(c in log for c in "\r\u2028\x1b") and "id=admin worker=- 1 ms ok" not in log


@pytest.mark.parametrize("value", [1001.0, 1e30, 3.4e38])
def test_a_huge_latent_is_refused_in_every_op(client: Client, value: float) -> None:
    """A finite latent of 1e38 was answered `ok` with an all-NaN depth map and a blank drawing."""
    latent = np.full(16, value, np.float32).tobytes()
    for op, fields in (("generate", {"camera": FRONT}), ("turntable", {"cameras": [FRONT] * 3}), ("mesh", {"grid": 32})):
        header, _ = client.call(op, [latent], style="line", **fields)
        assert header["error"]["code"] == "bad_request" and "latent values must lie in" in header["error"]["message"]


def _read_turntable(client: Client, rid: str, others: set[str | None]) -> tuple[list[int], dict]:
    """Read until turntable `rid` is done (ok all along) and each of `others` is answered with an error: (frame
    numbers, id -> error)."""
    frames, answers, done = [], {}, False
    while not (done and others <= set(answers)):
        header, _ = client.recv()
        if header["id"] != rid:
            answers[header["id"]] = header["error"]
        elif header.get("done"):
            assert header["ok"], header
            done = True
        else:
            assert header["ok"], header
            frames.append(header["frame"])
    return frames, answers


def _oversized_messages(rid_prefix: str) -> dict[str, list[bytes]]:
    """Messages each refused with too_large alone: a blob just over a frame's limit, one of 32 MiB, a header of
    2 MiB, and 300,000 empty frames (libzmq holds them, 64 bytes each, until they are read and dropped)."""
    mib = 1024 * 1024
    head = lambda rid: json.dumps({"id": rid, "op": "ping"}).encode()  # noqa: E731
    return {
        f"{rid_prefix}-blob": [b"SAGE/1", head(f"{rid_prefix}-blob"), b"\0" * (mib + 1)],
        f"{rid_prefix}-32mib": [b"SAGE/1", head(f"{rid_prefix}-32mib"), b"\0" * (32 * mib)],
        f"{rid_prefix}-frames": [b"SAGE/1", head(f"{rid_prefix}-frames"), *[b""] * 300_000],
    }


def test_an_oversized_message_is_refused_alone_while_the_clients_turntable_goes_on(backend, client: Client) -> None:
    """It used to close the connection (ZeroMQ's MAXMSGSIZE): no more frames, no done, no answer."""
    rid = client.send("turntable", style="pencil", seed=1, cameras=[FRONT] * 12, resolution=256)
    client.recv()  # the first frame is out: the turntable is in flight
    oversized = _oversized_messages("over")
    for frames in oversized.values():
        client.socket.send_multipart(frames)
    client.socket.send_multipart([b"SAGE/1", b"x" * (600 * 1024)])  # a header over 512 KiB: too_large, id null
    frames, answers = _read_turntable(client, rid, set(oversized) | {None})
    assert frames == list(range(1, 12))
    assert {rid: e["code"] for rid, e in answers.items()} == {**dict.fromkeys(oversized, "too_large"), None: "too_large"}
    assert "frame 2 is 1048577 bytes" in answers["over-blob"]["message"]
    assert "at most 8 frames, got 300002" in answers["over-frames"]["message"]
    assert client.call("ping")[0]["ok"]


class PeakRss:
    """The largest VmRSS of a process, sampled every 5 ms on a thread while in the `with` block (MiB over the start)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.start, self.peak, self._stop = pid, _rss_kb(pid), 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_kb(self.pid))

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024


def test_a_hostile_client_costs_another_clients_turntable_nothing(backend) -> None:
    """Oversized, over-many-frame, REQ-framed and newline-laden messages, and last a frame past disconnect_bytes,
    from one client while another's turntable is in flight: each gets its answer (the last closes that client's
    connection), the turntable completes, and the server's RSS stays within docs/protocol.md's bound."""
    victim, hostile = Client(backend.address), Client(backend.address)
    try:
        victim.call("hello")
        rid = victim.send("turntable", style="pencil", seed=2, cameras=[FRONT] * 12, resolution=256)
        victim.recv()  # in flight
        # Counted from here, with the render's own working set already held (in-process serving renders in the
        # server: counted from before the turntable, its peaks read +96-135 MiB), so the bound is the hostile client's.
        with PeakRss(backend.process.pid) as rss:
            oversized = _oversized_messages("h")
            for frames in oversized.values():
                hostile.socket.send_multipart(frames)
            hostile.socket.send_multipart([b"", b"SAGE/1", b'{"id":"req","op":"ping"}'])
            forged = hostile.send("ping", id="n\n00:00:00 mesh id=admin worker=- 1 ms ok")
            answers = {}
            while len(answers) < len(oversized) + 2:
                assert hostile.socket.poll(30_000)
                reply = hostile.socket.recv_multipart()
                header = json.loads(reply[-1])
                answers[header["id"] if reply[0] == b"SAGE/1" else ("envelope", reply[0])] = header
            hostile.socket.send_multipart([b"SAGE/1", b"{}", b"\0" * (100 * 1024 * 1024)])  # past disconnect_bytes
            frames, _ = _read_turntable(victim, rid, set())
        assert frames == list(range(1, 12))
        assert {k: a["error"]["code"] for k, a in answers.items() if k in oversized} == dict.fromkeys(oversized, "too_large")
        assert answers[("envelope", b"")]["error"]["code"] == "unsupported_protocol" and answers[forged]["ok"]
        assert rss.growth_mib < 128, rss.growth_mib  # docs/protocol.md: a frame of disconnect_bytes and the render
        assert victim.call("ping")[0]["ok"] and backend.process.poll() is None
        print(f"server RSS peak +{rss.growth_mib:.0f} MiB")
    finally:
        victim.close()
        hostile.close()


def _deaf_client(address: str) -> Client:
    """A client without ZMTP heartbeats whose receive queue fills at 5 messages: once its replies fill that and
    the TCP buffers, it sends and answers nothing, as a client blocked for a while (Blender rendering) does."""
    c = Client(address)
    c.socket.setsockopt(zmq.RCVHWM, 5)
    return c


def test_a_client_that_stops_reading_gets_everything_when_it_reads_again(backend) -> None:
    """It used to lose its connection after ~6 s (the server's ZMTP heartbeat timeout; the PONG waits behind the
    unread frames): 940 of 20,000 hellos, none of the turntable's replies, and the log said ok."""
    c = _deaf_client(backend.address)
    try:
        hellos = [c.send("hello") for _ in range(300)]
        rid = c.send("turntable", style="line", seed=1, cameras=[FRONT] * 60, resolution=256)
        time.sleep(8.0)  # past the old 1 s heartbeat + 5 s timeout
        replies = [c.recv()[0] for _ in range(len(hellos) + 61)]
        assert [h["id"] for h in replies[:300]] == hellos and all(h["ok"] for h in replies)
        assert [h.get("frame") for h in replies[300:-1]] == list(range(60)) and replies[-1]["done"]
        assert _logged_status(backend, "turntable", rid) == "ok"
    finally:
        c.close()


def test_a_job_whose_replies_are_lost_with_the_connection_is_logged_undelivered(backend) -> None:
    c, other = _deaf_client(backend.address), Client(backend.address)
    try:
        served = other.call("hello")[0]["served"]
        rid = c.send("turntable", style="line", seed=1, cameras=[FRONT] * 60, resolution=256)
        while other.call("hello")[0]["served"] == served:  # rendered to the end; most replies still in the server
            time.sleep(0.1)
        time.sleep(1.5)  # held unread past STALL_S: this client is not reading
        c.close()
        assert _logged_status(backend, "turntable", rid) == "undelivered"
    finally:
        other.close()


def test_a_client_that_reads_everything_and_closes_at_once_is_logged_ok(backend) -> None:
    """The sibling of the case above: replies read, the connection closed before the server's next sweep. The
    log said `undelivered` for such jobs (a Blender batch, the CLI's demo, a late worker's turntable)."""
    rids = []
    for seed in range(4):
        c = Client(backend.address)
        rid = c.send("turntable", style="line", seed=seed, cameras=[FRONT] * 4, resolution=64)
        indices, _ = _read_turntable(c, rid, set())
        assert indices == list(range(4))
        c.close()
        rids.append(rid)
    assert [_logged_status(backend, "turntable", rid) for rid in rids] == ["ok"] * 4


def test_a_traceback_quoting_a_client_cannot_forge_a_log_line(capsys) -> None:
    """An unexpected failure's message may quote what a client sent; its traceback lines all start with `  | `."""
    from sage_backend.server.protocol import print_traceback

    try:
        raise KeyError(f"style{FORGED}\r\u2028\x1b[2K")
    except KeyError:
        print_traceback()
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("  | ") and "\x1b" not in line for line in lines), lines


@pytest.mark.parametrize("op", ["hello", "ping", "cancel", "generate", "turntable", "mesh"])
def test_each_op_refuses_an_oversized_frame_and_a_ninth_frame_by_its_id(client: Client, op: str) -> None:
    """Every op alike: a blob one byte over message_bytes, nine frames (eight pass), a first frame over the limit."""
    fields = {"hello": {}, "ping": {}, "cancel": {"target": "x"}, "generate": {"style": "line", "seed": 1, "camera": FRONT},
              "turntable": {"style": "line", "seed": 1, "cameras": [FRONT]}, "mesh": {"style": "line", "seed": 1, "grid": 32}}[op]
    header = lambda rid: json.dumps({"id": rid, "op": op, **fields}).encode()  # noqa: E731
    client.socket.send_multipart([b"SAGE/1", header("big"), b"\0" * (1024 * 1024 + 1)])
    client.socket.send_multipart([b"SAGE/1", header("nine"), *[b"\0"] * 7])
    client.socket.send_multipart([b"S" * (2 * 1024 * 1024), header("magic")])
    answers = {h["id"]: h for h in (client.recv()[0] for _ in range(3))}
    assert answers["big"]["error"] == {"code": "too_large", "message": "frame 2 is 1048577 bytes; a frame holds at most 1048576"}
    assert answers["nine"]["error"] == {"code": "too_large", "message": "a request has at most 8 frames, got 9"}
    assert answers[None]["error"] == {"code": "unsupported_protocol", "message": "first frame must be SAGE/1"}
    if op in ("hello", "ping", "cancel"):  # eight frames are within the limit: the extra blobs are ignored
        client.socket.send_multipart([b"SAGE/1", header("eight"), *[b"\0"] * 6])
        assert client.recv()[0]["ok"]


@pytest.mark.parametrize("ready", [{"name": "w", "device": "cpu", "styles": 5}, {"name": "w", "device": "cpu", "styles": [1]},
                                   {"name": ["w"], "device": "cpu"}, {"name": "w", "device": None}])
def test_a_worker_ready_of_the_wrong_types_is_refused(ready: dict) -> None:
    """A READY on the worker socket is another way in: its names reach the log (escaped) and must be text."""
    from sage_backend.server import link

    with pytest.raises(ValueError, match="malformed READY"):
        link.read_ready([json.dumps(ready).encode()])


def test_a_million_frames_cost_memory_only_while_they_are_read(backend, client: Client) -> None:
    """libzmq holds a message as 64 bytes per frame until it is read; after it the server returns that memory."""
    client.call("ping")
    before = _rss_kb(backend.process.pid)
    client.socket.send_multipart([b"SAGE/1", b'{"id":"million","op":"ping"}', *[b""] * 1_000_000])
    header, _ = client.recv(timeout=120)
    assert header["error"] == {"code": "too_large", "message": "a request has at most 8 frames, got 1000002"}
    assert (_rss_kb(backend.process.pid) - before) / 1024 < 16  # it held 64 MiB for good before the trim
