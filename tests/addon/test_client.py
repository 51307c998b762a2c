"""The add-on's codec and DEALER client against a real ROUTER socket standing in for the backend."""
import json
import threading

import pytest
import zmq

from blender_addon import protocol
from blender_addon.client import BackendError, BackendUnavailable, Client


@pytest.fixture
def router():
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 5000)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    yield socket, f"tcp://127.0.0.1:{port}"
    socket.close(0)
    context.term()


def receive(socket):
    identity, magic, header, *blobs = socket.recv_multipart()
    assert magic == protocol.MAGIC
    return identity, json.loads(header), blobs


def answer(socket, identity, header, blobs=()):
    socket.send_multipart([identity, protocol.MAGIC, json.dumps(header).encode(), *blobs])


def test_request_round_trip_with_blobs(router):
    socket, address = router
    client = Client(address, timeout_s=5.0)
    try:
        request_id = client.send("generate", {"style": "ink", "seed": 3}, [({"name": "latent", "dtype": "float32", "shape": [2], "format": "raw"}, b"\0" * 8)])
        identity, header, blobs = receive(socket)
        assert header == {"id": request_id, "op": "generate", "style": "ink", "seed": 3, "blobs": [{"name": "latent", "dtype": "float32", "shape": [2], "format": "raw"}]}
        assert blobs == [b"\0" * 8]
        image = bytes(range(2 * 3 * 3))
        answer(socket, identity, {"id": request_id, "ok": True, "blobs": [{"name": "drawing", "dtype": "uint8", "shape": [2, 3, 3], "format": "raw"}]}, [image])
        reply = client.wait(request_id)
        assert reply.ok and reply.blobs["drawing"].shape == (2, 3, 3) and reply.blobs["drawing"].data == image
        assert not client.pending
    finally:
        client.close()


@pytest.mark.parametrize("attributed", [True, False], ids=["its-id", "id-null"])
def test_error_reply_raises_backend_error(router, attributed):
    """An error for the request, or one the backend could not attribute (id null: a header too large to
    read), fails the request in flight."""
    socket, address = router
    client = Client(address, timeout_s=5.0)
    try:
        request_id = client.send("generate", {"style": "nope"})
        identity, header, _ = receive(socket)
        answer(socket, identity, {"id": request_id if attributed else None, "ok": False,
                                  "error": {"code": "unknown_style", "message": "no style 'nope'"}})
        with pytest.raises(BackendError, match="unknown_style: no style 'nope'"):
            client.wait(request_id)
    finally:
        client.close()


def test_stale_replies_are_dropped_and_newest_wins(router):
    socket, address = router
    client = Client(address, timeout_s=5.0)
    try:
        old = client.send("generate", {"seed": 1})
        client.forget(old)  # the user moved the camera: nobody wants this one any more
        new = client.send("generate", {"seed": 2})
        for _ in range(2):
            identity, header, _ = receive(socket)
            answer(socket, identity, {"id": header["id"], "ok": True})
        reply = client.wait(new)
        assert reply.id == new
        assert client.poll(0.2) == []
        assert client.dropped == 1
    finally:
        client.close()


def test_stream_yields_frames_until_done_and_cancels_when_closed_early(router):
    socket, address = router
    client = Client(address, timeout_s=5.0)

    def serve():
        identity, header, _ = receive(socket)
        for frame in range(3):
            answer(socket, identity, {"id": header["id"], "ok": True, "frame": frame})
        answer(socket, identity, {"id": header["id"], "ok": True, "done": True})
        identity, header2, _ = receive(socket)
        for frame in range(3):
            answer(socket, identity, {"id": header2["id"], "ok": True, "frame": frame})
        served.append(receive(socket)[1])  # the cancel

    served = []
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert [r.header["frame"] for r in client.stream("turntable", {"cameras": []})] == [0, 1, 2]
        stream = client.stream("turntable", {"cameras": []})
        assert next(stream).header["frame"] == 0
        stream.close()
        thread.join(10)
        assert served[0]["op"] == "cancel" and served[0]["target"].endswith("-2")
        assert not client.pending
    finally:
        client.close()


def test_silent_backend_times_out_and_the_client_recovers(router):
    socket, address = router
    client = Client(address, timeout_s=5.0)
    try:
        with pytest.raises(BackendUnavailable, match="did not answer within 0.2 s"):
            client.request("ping", timeout_s=0.2)
        receive(socket)  # the lost request reached the server, but its answer would now be stale
        request_id = client.send("ping")
        identity, header, _ = receive(socket)
        answer(socket, identity, {"id": header["id"], "ok": True})
        assert client.wait(request_id).ok
    finally:
        client.close()


def test_nobody_listening_is_a_clear_timeout():
    client = Client("tcp://127.0.0.1:1", timeout_s=0.2)
    try:
        with pytest.raises(BackendUnavailable, match="is it running"):
            client.hello()
    finally:
        client.close()


def test_bad_address_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        Client("not-an-address")
    with pytest.raises(BackendUnavailable, match=r"reads tcp://HOST:PORT"):
        Client("localhost:5555")
    for address, why in (("tcp://127.0.0.1:99999", "1..65535, not '99999'"), ("tcp://127.0.0.1:0", "not '0'"),
                         ("tcp://127.0.0.1:port", "not 'port'"), ("tcp://127.0.0.1", "no host and port"), ("tcp://:5555", "no host")):
        with pytest.raises(BackendUnavailable, match=why):  # ZeroMQ takes some of these and never connects
            Client(address)


def test_another_program_on_the_port_is_named_at_the_handshake_not_blamed_on_curve(foreign_listener):
    """An HTTP server (or anything that never greets in ZMTP) on the port: libzmq gave up its handshake after
    30 s and the add-on blamed CURVE keys. The timeout here is 60 s: the error must come from the handshake."""
    client = Client(foreign_listener, timeout_s=60)
    try:
        with pytest.raises(BackendUnavailable, match="another program listens on that port, not a SAGE backend"):
            client.hello()
    finally:
        client.close()


@pytest.mark.parametrize(
    "frames,reason",
    [
        ([b"HTTP/1.1"], "not a SAGE/1"),
        ([protocol.MAGIC, b"{nope"], "not JSON"),
        ([protocol.MAGIC, b'{"id": 3, "ok": true}'], "string 'id'"),
        ([protocol.MAGIC, b'{"id": null, "ok": true}'], "string 'id'"),  # only an error may be unattributed
        ([protocol.MAGIC, b'{"id": "a", "ok": true, "blobs": [{"name": "x", "dtype": "uint8", "shape": [4]}]}'], "describes 1 blobs but carries 0"),
        ([protocol.MAGIC, b'{"id": "a", "ok": true, "blobs": [{"name": "x", "dtype": "uint8", "shape": [4]}]}', b"abc"], "should hold 4 bytes"),
        ([protocol.MAGIC, b'{"id": "a", "ok": true, "blobs": [{"name": "x", "dtype": "int64", "shape": [1]}]}', b"12345678"], "unknown dtype"),
    ],
)
def test_decode_rejects_malformed_replies(frames, reason):
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.decode_reply(frames)


def test_file_blobs_keep_their_bytes():
    reply = protocol.decode_reply([protocol.MAGIC, b'{"id": "a", "ok": true, "vertices": 3, "blobs": [{"name": "mesh", "dtype": "uint8", "shape": [5], "format": "ply"}]}', b"ply\n\n"])
    assert reply.blobs["mesh"].format == "ply" and reply.blobs["mesh"].data == b"ply\n\n" and reply.header["vertices"] == 3


def test_request_ids_are_bounded():
    with pytest.raises(ValueError, match="1..64"):
        protocol.encode_request("x" * 65, "ping", {})
