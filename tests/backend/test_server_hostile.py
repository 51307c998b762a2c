"""What reaches the server from hostile or careless clients, over real ZeroMQ: each kind of bad message gets
its one answer (docs/protocol.md, "Errors"), costs bounded memory, and never costs another request."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import zmq

from tests.backend.test_server import FRONT, Client, _logged_status

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
