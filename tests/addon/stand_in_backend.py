"""A stand-in SAGE backend for add-on tests until/besides the real server: real ZeroMQ ROUTER, protocol v1,
images that depend on the camera (so frames differ), a PLY mesh with colours and class labels.

Run: python tests/addon/stand_in_backend.py tcp://127.0.0.1:PORT
"""
import hashlib
import io
import json
import sys

import numpy as np
import trimesh
import zmq

MAGIC = b"SAGE/1"
PALETTE = [[(i * 53) % 256, (i * 97) % 256, (i * 151) % 256] for i in range(19)]


def images(camera, resolution):
    digest = hashlib.sha256(json.dumps(camera, sort_keys=True).encode()).digest()
    drawing = np.zeros((resolution, resolution, 3), np.uint8)
    drawing[:] = np.frombuffer(digest[:3], np.uint8)
    drawing[0, :, :] = 255  # the top row is white: the add-on must flip it to Blender's last row
    semantic = np.zeros((resolution, resolution), np.uint8)
    semantic[: resolution // 2] = 13  # top half "hair"
    semantic[resolution // 2 :] = 1 + digest[3] % 5
    return drawing, semantic


def image_reply(request_id, camera, resolution, extra=None):
    drawing, semantic = images(camera, resolution)
    header = {"id": request_id, "ok": True, **(extra or {}), "blobs": [
        {"name": "drawing", "dtype": "uint8", "shape": list(drawing.shape), "format": "raw"},
        {"name": "semantic", "dtype": "uint8", "shape": list(semantic.shape), "format": "raw"}]}
    return header, [drawing.tobytes(), semantic.tobytes()]


def mesh_reply(request_id, fmt):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    labels = (sphere.vertices[:, 1] > 0).astype(np.uint8) * 13 + 1
    sphere.visual.vertex_colors = np.concatenate([np.array(PALETTE, np.uint8)[labels], np.full((len(labels), 1), 255, np.uint8)], 1)
    sphere.vertex_attributes["label"] = labels
    data = sphere.export(file_type=fmt)
    data = data if isinstance(data, bytes) else data.encode()
    return {"id": request_id, "ok": True, "vertices": len(sphere.vertices), "faces": len(sphere.faces),
            "blobs": [{"name": "mesh", "dtype": "uint8", "shape": [len(data)], "format": fmt}]}, [data]


def serve(address):
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(address)
    print("ready", flush=True)
    while True:
        identity, _magic, raw, *_ = socket.recv_multipart()
        request = json.loads(raw)
        rid, op = request["id"], request["op"]
        replies = []
        if op == "hello":
            replies = [({"id": rid, "ok": True, "protocol": 1, "server": "stand-in 0", "device": "cpu",
                         "styles": [{"name": "ink", "description": "", "resolution": 256}, {"name": "pencil", "description": "", "resolution": 256}],
                         "labels": [str(i) for i in range(19)], "palette": PALETTE, "limits": {}}, [])]
        elif op == "ping" or op == "cancel":
            replies = [({"id": rid, "ok": True}, [])]
        elif op == "generate":
            replies = [image_reply(rid, request["camera"], request.get("resolution", 256))]
        elif op == "turntable":
            replies = [image_reply(rid, cam, request.get("resolution", 256), {"frame": i}) for i, cam in enumerate(request["cameras"])]
            replies.append(({"id": rid, "ok": True, "done": True}, []))
        elif op == "mesh":
            replies = [mesh_reply(rid, request.get("format", "ply"))]
        else:
            replies = [({"id": rid, "ok": False, "error": {"code": "unknown_op", "message": op}}, [])]
        for header, blobs in replies:
            socket.send_multipart([identity, MAGIC, json.dumps(header).encode(), *blobs])


if __name__ == "__main__":
    serve(sys.argv[1])
