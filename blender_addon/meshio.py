"""Backend mesh files -> arrays: a small PLY reader (ascii and binary), free of bpy (operators.import_ply builds the Blender mesh).

The add-on parses PLY itself because Blender's importer drops custom vertex properties (the class labels).
"""
from __future__ import annotations

from typing import Any

import numpy as np


PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
LABEL_PROPERTIES = ("label", "labels", "semantic", "class")


def read_ply(data: bytes) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """-> vertices (N, 3) float, triangles (M, 3) int, every vertex property and every face property (the
    polygon list included) by name."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", "replace").splitlines()
    fmt, elements = "", []  # elements: [name, count, [(prop, type) or (prop, (count_type, item_type))]]
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property" and elements:
            prop = (words[4], (words[2], words[3])) if words[1] == "list" else (words[2], words[1])
            elements[-1][2].append(prop)
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported PLY format {fmt!r}")
    values = _read_ascii(data[body_start:], elements) if fmt == "ascii" else _read_binary(data, body_start, elements, "<" if fmt == "binary_little_endian" else ">")
    vertex = values.get("vertex")
    if vertex is None or not all(k in vertex for k in "xyz"):
        raise ValueError("the PLY file has no vertex positions")
    vertices = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float64)
    faces = values.get("face", {})
    lists = next(iter(faces.values()), None) if faces else None
    triangles = _triangulate(lists) if lists is not None else np.zeros((0, 3), dtype=np.int64)
    return vertices, triangles, vertex, faces


def _read_binary(data: bytes, offset: int, elements: list, order: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, count, props in elements:
        if all(not isinstance(t, tuple) for _, t in props):
            dtype = np.dtype([(p, order + PLY_TYPES[t]) for p, t in props])
            table = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += dtype.itemsize * count
            out[name] = {p: table[p] for p, _ in props}
            continue
        prop, (count_type, item_type) = props[0] if isinstance(props[0][1], tuple) else (None, (None, None))
        if prop is None or any(isinstance(t, tuple) for _, t in props[1:]):
            raise ValueError(f"PLY element '{name}' has a list that is not its first property, or two lists")
        count_dtype, item_dtype = np.dtype(order + PLY_TYPES[count_type]), np.dtype(order + PLY_TYPES[item_type])
        first = int(np.frombuffer(data, count_dtype, 1, offset)[0]) if count else 0
        # The backend's faces: a triangle list, then the face's class (`semantic`): one fixed-size row each.
        row = np.dtype([("n", count_dtype), ("items", item_dtype, (first,))] + [(p, order + PLY_TYPES[t]) for p, t in props[1:]])
        table = np.frombuffer(data, dtype=row, count=count, offset=offset) if count else None
        if table is not None and np.all(table["n"] == first):  # the usual case: all triangles, read at once
            out[name] = {prop: table["items"], **{p: table[p] for p, _ in props[1:]}}
            offset += row.itemsize * count
            continue
        if len(props) != 1:
            raise ValueError(f"PLY element '{name}' mixes polygons of different sizes with other properties")
        rows = []
        for _ in range(count):
            n = int(np.frombuffer(data, count_dtype, 1, offset)[0])
            offset += count_dtype.itemsize
            rows.append(np.frombuffer(data, item_dtype, n, offset))
            offset += item_dtype.itemsize * n
        out[name] = {prop: rows}
    return out


def _read_ascii(body: bytes, elements: list) -> dict[str, dict[str, Any]]:
    lines = iter(body.decode("ascii").splitlines())
    out: dict[str, dict[str, Any]] = {}
    for name, count, props in elements:
        rows = [next(lines).split() for _ in range(count)]
        if len(props) == 1 and isinstance(props[0][1], tuple):
            out[name] = {props[0][0]: [np.array(r[1 : 1 + int(r[0])], dtype=np.int64) for r in rows]}
        else:
            columns = np.array(rows, dtype=np.float64).reshape(count, len(props))
            out[name] = {p: columns[:, i].astype(PLY_TYPES[t]) for i, (p, t) in enumerate(props)}
    return out


def _triangulate(lists: Any) -> np.ndarray:
    if isinstance(lists, np.ndarray):
        polygons = [lists] if lists.shape[1] == 3 else [lists[:, [0, i, i + 1]] for i in range(1, lists.shape[1] - 1)]
        return np.concatenate(polygons).astype(np.int64) if len(lists) else np.zeros((0, 3), dtype=np.int64)
    fans = [(p[0], p[i], p[i + 1]) for p in lists for i in range(1, len(p) - 1)]
    return np.array(fans, dtype=np.int64).reshape(-1, 3)


def vertex_colors(props: dict[str, np.ndarray]) -> np.ndarray | None:
    """RGBA float (N, 4) in 0..1 from red/green/blue[/alpha] properties, or None."""
    if not all(k in props for k in ("red", "green", "blue")):
        return None
    scale = 255.0 if props["red"].dtype.kind in "ui" else 1.0
    channels = [props[k].astype(np.float32) / scale for k in ("red", "green", "blue")]
    alpha = props["alpha"].astype(np.float32) / scale if "alpha" in props else np.ones_like(channels[0])
    return np.stack([*channels, alpha], axis=1)


def labels(props: dict[str, np.ndarray]) -> np.ndarray | None:
    """Class ids (int32) from a vertex's or a face's label property (`semantic` in the backend's files), or None."""
    name = next((k for k in LABEL_PROPERTIES if k in props), None)
    return props[name].astype(np.int32) if name else None
