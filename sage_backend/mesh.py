"""The generator's density field as a mesh: density grid built slab by slab, marching cubes, per-vertex
semantic labels and colours read from rendered views, export to PLY / GLB / OBJ.

Iso-level: density 10 by default, pi-GAN's shape-extraction convention (its script thresholds sigma at
~10). A field whose maximum stays below it falls back to its 99.5th percentile; mesh.metadata says so
("threshold", "threshold_source", "note"). The grid is closed with a layer of zero density before
marching cubes, so a head cut by the box gets flat caps there and every mesh is closed.

Orientation, so that every format shows the head upright (+Z) facing -Y after Blender's default import:
- GLB and OBJ are written in SAGE coordinates (Y up, face +Z): glTF is Y-up by definition and OBJ's
  importer defaults to forward -Z / up Y; both of Blender's importers turn Y-up into Z-up.
- PLY has no axis convention and Blender's PLY importer converts nothing, so PLY is written in
  Blender coordinates: (x, y, z)_blender = (x, -z, y)_sage (cameras.SAGE_TO_BLENDER).

Per-vertex semantic labels (class ids of labels.py): PLY vertex property "semantic" (uint8); GLB custom
attribute "_SEMANTIC" (SCALAR float32: Blender's glTF importer keeps float and uint8 scalars as point
attributes, and uint8 scalars would break glTF's 4-byte vertex alignment). OBJ carries no per-vertex labels.

Parts: a labelled mesh has a part per class present, each face in the class two or three of its corners share,
else its first corner's (face_labels). PLY: face property "semantic"; GLB: one primitive per class with a
material named after the class in its palette colour (Blender's importer makes them material slots); OBJ:
one `g`/`usemtl` group per class and a material library, NAME.mtl beside NAME.obj (mesh_files, write_mesh).

Colours: PLY and OBJ carry the sRGB bytes. glTF defines COLOR_0 as linear, so a GLB gets the colours
converted to linear float32 (8-bit linear would round dark palette entries: sRGB 51 would read back 49);
Blender's importer then shows exactly the palette.
"""
from __future__ import annotations

import importlib.util
import json
import math
import struct
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes
from tqdm import tqdm

from sage_backend.cameras import SAGE_TO_BLENDER, Camera, project_points, stack_cameras
from sage_backend.files import atomic_write_files
from sage_backend.inference import Frame, Interrupted, PortraitRenderer
from sage_backend.labels import LABEL_NAMES, PALETTE
from sage_backend.limits import DEFAULT_PSI

DEFAULT_THRESHOLD = 10.0
FALLBACK_QUANTILE = 0.995
FORMATS = ("ply", "glb", "obj")
COLOR_MODES = ("semantic", "drawing", "none")
SEMANTIC = "semantic"  # the vertex attribute holding class ids (PLY property name)
GLB_SEMANTIC = "_SEMANTIC"  # glTF custom attributes need a leading underscore
POINTS_PER_CALL = 262144  # points per density call when `slab` is not given (the renderer's chunk)
# Views that colour and label vertices: 8 yaws all around the head, a little below and above it.
COLOR_VIEWS = tuple((math.pi / 2 + yaw, math.pi / 2 + pitch) for pitch in (0.25, -0.3)
                    for yaw in np.linspace(-math.pi, math.pi, 8, endpoint=False))


def default_bound(renderer: PortraitRenderer) -> float:
    """Half the side of the generator's box (FieldConfig.box_warp / 2): the field is only trained inside it."""
    return renderer.cfg.field.box_warp / 2


def density_volume(renderer: PortraitRenderer, z: torch.Tensor, psi: float = DEFAULT_PSI, grid: int = 256, bound: float | None = None,
                   slab: int | None = None, should_stop: Callable[[], bool] | None = None, progress: bool = False,
                   on_progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Density on a grid^3 lattice over [-bound, bound]^3, indexed [x, y, z] (float32), on the renderer's device.

    Points are made on the device `slab` x-planes at a time (default: about POINTS_PER_CALL points), so memory
    holds one slab of points besides the grid itself (512 MB at 512^3). `should_stop` is checked between
    slabs and inside each density call (raises inference.Interrupted), `on_progress(fraction done)` before each
    slab; grid < 2 or slab < 1 raise ValueError."""
    if grid < 2:
        raise ValueError("grid must be at least 2")
    bound = default_bound(renderer) if bound is None else float(bound)
    slab = max(1, POINTS_PER_CALL // grid**2) if slab is None else slab
    if slab < 1:
        raise ValueError("slab must be at least 1")
    # numpy's lattice, moved to the device: every device samples exactly the same points.
    axis = torch.from_numpy(np.linspace(-bound, bound, grid, dtype=np.float32)).to(renderer.device)
    yy, zz = torch.meshgrid(axis, axis, indexing="ij")
    values = torch.empty((grid, grid, grid), dtype=torch.float32, device=renderer.device)
    for start in tqdm(range(0, grid, slab), desc="density grid", unit="slab", disable=not progress):
        if should_stop is not None and should_stop():
            raise Interrupted()
        if on_progress is not None:
            on_progress(start / grid)
        xs = axis[start:start + slab]
        shape = (len(xs), grid, grid)
        points = torch.stack([xs[:, None, None].expand(shape), yy.expand(shape), zz.expand(shape)], dim=-1)
        values[start:start + len(xs)] = renderer.density(points.reshape(-1, 3), z, psi, should_stop=should_stop).reshape(shape)
    return values


def density_grid(renderer: PortraitRenderer, z: torch.Tensor, psi: float = DEFAULT_PSI, grid: int = 256, bound: float | None = None,
                 slab: int | None = None, should_stop: Callable[[], bool] | None = None, progress: bool = False) -> np.ndarray:
    """`density_volume` as a numpy array on the CPU (arguments and errors as there)."""
    return density_volume(renderer, z, psi, grid, bound, slab, should_stop, progress).cpu().numpy()


def iso_level(values: np.ndarray | torch.Tensor, threshold: float | None = None) -> tuple[float, str]:
    """The iso-level to use and where it came from ("given", "default", "fallback"); values on any device.

    A level L bounds the region {density > L}; a level with no density above it (at or over the field's
    maximum) raises ValueError "no surface"."""
    level = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not math.isfinite(level):
        raise ValueError(f"the iso-level must be a finite number, got {level}")
    values = torch.as_tensor(values)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("the density field holds NaN or infinite values")
    peak = float(values.max())
    if peak > level:
        return level, "default" if threshold is None else "given"
    fallback = float(np.quantile(values.cpu().numpy(), FALLBACK_QUANTILE))  # torch.quantile stops at 2^24 values
    if threshold is not None or not fallback < peak:
        raise ValueError(f"the density field has no surface at threshold {level:g} (max {peak:.3g}): no density above it")
    return fallback, "fallback"


def gpu_marching_cubes() -> bool:
    """Whether marching cubes can run on the GPU: NVIDIA Warp (`pip install warp-lang`, the `gpu` extra)
    is installed. Warp compiles its kernels at run time, so its wheel needs no CUDA toolkit."""
    return importlib.util.find_spec("warp") is not None


def marching_cubes_on_device(padded: torch.Tensor, level: float, step: float, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) in grid units times `step` and faces (F, 3) of {padded > level}, faces wound so normals
    point down the density gradient (out of the head), as scikit-image's gradient_direction="ascent".

    backend "auto": Warp on a CUDA tensor when installed (the surface is extracted on the GPU, only the mesh
    comes back), else scikit-image on the CPU; "warp" or "skimage" force one (Warp runs on CPU tensors too)."""
    if backend == "warp" or (backend == "auto" and padded.is_cuda and gpu_marching_cubes()):
        import warp as wp
        import warp.geometry  # noqa: F401  (registers wp.geometry)

        wp.config.quiet = True
        wp.init()  # once per process; a no-op after
        if padded.is_cuda:
            torch.cuda.synchronize(padded.device)  # Warp runs on its own stream
        verts, indices = wp.geometry.IsoSurfaceMarchingCubes.extract(wp.from_torch(padded.float().contiguous()), level)
        faces = indices.numpy().reshape(-1, 3)[:, ::-1]  # Warp winds the other way round
        return verts.numpy() * np.float32(step), np.ascontiguousarray(faces)
    if backend not in ("auto", "skimage"):
        raise ValueError(f"marching cubes backend must be auto, warp or skimage, got {backend!r}")
    verts, faces, _, _ = marching_cubes(padded.cpu().numpy(), level=level, spacing=(step, step, step), gradient_direction="ascent")
    return verts, faces


def mesh_from_grid(values: np.ndarray | torch.Tensor, bound: float, threshold: float | None = None) -> trimesh.Trimesh:
    """Marching cubes around {density > level} (level: see iso_level) -> a closed mesh in SAGE world units,
    outward normals; values (G, G, G) on any device (a CUDA grid is meshed there, `marching_cubes_on_device`).
    A level at the field's minimum or on a plateau bounds what lies above it: a relu field's exact zeros at
    level 0 are empty space. Raises ValueError when nothing or everything lies above the level."""
    values = torch.as_tensor(values)
    level, source = iso_level(values, threshold)
    low = float(values.min())
    if low > level:
        raise ValueError(f"the density field has no surface at threshold {level:g}: it is solid everywhere in the box "
                         f"(min {low:.3g})")
    # Marching cubes cannot tell a value equal to the level from one above it; one float step up puts every
    # value equal to the level outside, as {density > level} says, and moves no surface by more than that step.
    march = float(np.nextafter(np.float32(level), np.float32(np.inf)))
    step = 2 * bound / (values.shape[0] - 1)
    # Empty space around the box closes the surface where the head meets the box (a flat cap there).
    padded = torch.nn.functional.pad(values, (1, 1, 1, 1, 1, 1), value=min(level, low))
    verts, faces = marching_cubes_on_device(padded, march, step)
    del padded
    mesh = trimesh.Trimesh(np.clip(verts - bound - step, -bound, bound), faces, process=False)
    mesh.metadata.update(threshold=level, threshold_source=source)
    if source == "fallback":
        mesh.metadata["note"] = (f"the field never reaches density {DEFAULT_THRESHOLD:g} (max {float(values.max()):.3g}); "
                                 f"iso-level {level:.3g} is its {FALLBACK_QUANTILE:.1%} quantile")
    return mesh


def keep_largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Drop floaters: keep the connected component with the most faces.

    Components come from the vertex graph (marching cubes shares vertices between faces) through
    scipy's connected_components: a few bytes per face, where trimesh's split needs ~0.7 KB per face."""
    faces = np.asarray(mesh.faces)
    n = len(mesh.vertices)
    edges = faces[:, [0, 1, 1, 2]].reshape(-1, 2)  # two edges per triangle connect all three corners
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    count, component = connected_components(graph, directed=False)
    if count <= 1:
        return mesh
    face_component = component[faces[:, 0]]
    kept = faces[face_component == np.bincount(face_component).argmax()]
    used = np.unique(kept)
    index = np.zeros(n, dtype=faces.dtype)
    index[used] = np.arange(len(used), dtype=faces.dtype)
    largest = trimesh.Trimesh(np.asarray(mesh.vertices)[used], index[kept], process=False)
    largest.metadata.update(mesh.metadata, components_removed=count - 1)
    return largest


def sample_views(vertices: np.ndarray, normals: np.ndarray, cameras: list[Camera], frames: list[Frame],
                 tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vertex: the semantic label and drawing colour in the view that sees it most head-on.

    A view sees a vertex when it projects inside the image, faces the camera, and its distance to the
    camera matches the rendered depth (a ray distance) within `tolerance`. Returns labels (N,) uint8,
    colours (N, 3) uint8 and seen (N,) bool; unseen vertices get label 0 and white."""
    c2w, fov = stack_cameras(cameras)
    verts = torch.tensor(np.asarray(vertices), dtype=torch.float32)
    unit_normals = torch.nn.functional.normalize(torch.tensor(np.asarray(normals), dtype=torch.float32), dim=-1)
    best = torch.zeros(len(verts))  # facing > 0 is required, so 0 means "not seen yet"
    labels = np.zeros(len(verts), np.uint8)
    colors = np.full((len(verts), 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        xy, _ = project_points(verts[None], c2w[i:i + 1], fov[i:i + 1])
        xy = xy[0]
        height, width = frame.depth.shape
        col = ((xy[:, 0] + 1) / 2 * width).floor().long().clamp(0, width - 1)
        row = ((1 - xy[:, 1]) / 2 * height).floor().long().clamp(0, height - 1)
        to_camera = c2w[i, :3, 3] - verts
        distance = to_camera.norm(dim=-1)
        facing = (unit_normals * to_camera).sum(-1) / distance
        rendered = torch.from_numpy(frame.depth)[row, col]
        better = (xy.abs() <= 1).all(-1) & ((distance - rendered).abs() < tolerance) & (facing > best)
        best = torch.where(better, facing, best)
        take = better.numpy()
        r, c = row.numpy()[take], col.numpy()[take]
        if frame.semantic is not None:
            labels[take] = frame.semantic[r, c]
        if frame.drawing is not None:
            colors[take] = frame.drawing[r, c]
    return labels, colors, (best > 0).numpy()


def vertex_labels_and_colors(renderer: PortraitRenderer, z: torch.Tensor, psi: float, mesh: trimesh.Trimesh,
                             should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels and drawing colours from COLOR_VIEWS at the model's output resolution; vertices no view
    sees (deep folds) copy their nearest seen vertex. Returns labels, colours and the seen fraction."""
    cameras = [Camera.orbit(yaw, pitch) for yaw, pitch in COLOR_VIEWS]
    frames = list(renderer.render(z, cameras, psi, outputs=("drawing", "semantic", "depth"), should_stop=should_stop))
    # One depth sample interval: rendered depth is an expectation over samples that far apart.
    tolerance = max(0.01, 2 * renderer.cfg.render.half_depth / renderer.cfg.render.samples_per_ray)
    labels, colors, seen = sample_views(mesh.vertices, mesh.vertex_normals, cameras, frames, tolerance)
    if seen.any() and not seen.all():
        _, nearest = cKDTree(mesh.vertices[seen]).query(mesh.vertices[~seen])
        labels[~seen] = labels[seen][nearest]
        colors[~seen] = colors[seen][nearest]
    return labels, colors, float(seen.mean())


def extract_mesh(renderer: PortraitRenderer, z: torch.Tensor, psi: float = DEFAULT_PSI, grid: int = 256, threshold: float | None = None,
                 colors: str = "semantic", keep_largest: bool = True, should_stop: Callable[[], bool] | None = None,
                 progress: bool = False, bound: float | None = None, on_progress: Callable[[float], None] | None = None) -> trimesh.Trimesh:
    """The head's surface for one latent, in SAGE world units, coloured by `colors` ("semantic" | "drawing" |
    "none"; labels are attached as vertex attribute "semantic" unless "none"). `on_progress(fraction)` is called
    while the density grid (most of the time) fills. Raises ValueError when the field has no surface,
    inference.Interrupted when `should_stop` says so."""
    if colors not in COLOR_MODES:
        raise ValueError(f"colors must be one of {', '.join(COLOR_MODES)}")
    bound = default_bound(renderer) if bound is None else float(bound)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    values = density_volume(renderer, z, psi, grid, bound, should_stop=should_stop, progress=progress, on_progress=on_progress)
    lap("grid_s")
    mesh = mesh_from_grid(values, bound, threshold)
    del values
    lap("marching_cubes_s")
    if keep_largest:
        mesh = keep_largest_component(mesh)
        lap("components_s")
    if colors != "none":
        labels, drawing, seen = vertex_labels_and_colors(renderer, z, psi, mesh, should_stop)
        mesh.vertex_attributes[SEMANTIC] = labels
        rgb = np.asarray(PALETTE, np.uint8)[labels] if colors == "semantic" else drawing
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1))
        mesh.metadata["seen_fraction"] = round(seen, 4)
        lap("colors_s")
    timings["total_s"] = round(sum(timings.values()), 4)
    mesh.metadata.update(grid=grid, bound=bound, psi=psi, colors=colors, timings=timings)
    return mesh


def face_labels(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each face's class from its corners' (labels (V,) class ids, faces (F, 3)): the class two or three corners
    share, else its first corner's. (F,) uint8. The one rule every format's parts follow (module docstring)."""
    labels = np.asarray(labels, np.uint8)
    first, second, third = (labels[np.asarray(faces)[:, i]] for i in range(3))
    return np.where(second == third, second, first)


def mesh_to_bytes(mesh: trimesh.Trimesh, fmt: str, name: str = "mesh") -> bytes:
    """The mesh file in the orientation documented above (PLY in Blender axes, GLB/OBJ in SAGE axes), with its
    parts when it has labels; an OBJ names its material library `name`.mtl (mesh_files has both files)."""
    if fmt not in FORMATS:
        raise ValueError(f"mesh format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    labels = mesh.vertex_attributes.get(SEMANTIC)
    faces = np.asarray(mesh.faces)
    parts = None if labels is None else face_labels(faces, labels)
    colors = mesh.visual.vertex_colors if mesh.visual.kind == "vertex" else None
    if fmt == "ply":
        return ply_bytes(np.asarray(mesh.vertices) @ SAGE_TO_BLENDER.T, faces, colors, labels, parts)
    if fmt == "glb":
        rgba = None
        if colors is not None:
            rgba = colors.astype(np.float32) / 255
            rgba[:, :3] = srgb_to_linear(rgba[:, :3])
        return glb_bytes(np.asarray(mesh.vertices), faces, rgba, labels, parts)
    return obj_bytes(np.asarray(mesh.vertices), faces, colors, parts, f"{name}.mtl")


def mesh_files(mesh: trimesh.Trimesh, fmt: str, name: str = "mesh") -> dict[str, bytes]:
    """Every file of the mesh in `fmt`, by suffix: {fmt: the mesh} and, for a labelled OBJ, {"mtl": its material
    library}, which the OBJ names `name`.mtl (write both into one folder as NAME.obj and NAME.mtl)."""
    files = {fmt: mesh_to_bytes(mesh, fmt, name)}
    labels = mesh.vertex_attributes.get(SEMANTIC)
    if fmt == "obj" and labels is not None:
        files["mtl"] = mtl_bytes(np.unique(face_labels(mesh.faces, labels)))
    return files


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, labels: np.ndarray | None = None,
              parts: np.ndarray | None = None) -> bytes:
    """Binary little-endian PLY, the layout trimesh writes (float x y z, uchar red green blue alpha, uchar
    `semantic`; faces as a uchar-counted int list, then uchar `semantic` when `parts` are given), built as two
    numpy record arrays: ~10x faster than trimesh's export, which hashes its caches first. vertices (V, 3),
    faces (F, 3), colors (V, 4) uint8, labels (V,) and parts (F,) class ids (face_labels)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    fields += [(c, "u1") for c in ("red", "green", "blue", "alpha")] if colors is not None else []
    fields += [(SEMANTIC, "u1")] if labels is not None else []
    records = np.empty(len(vertices), dtype=fields)
    for i, axis in enumerate("xyz"):
        records[axis] = vertices[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue", "alpha")):
            records[channel] = colors[:, i]
    if labels is not None:
        records[SEMANTIC] = labels
    triangles = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))] + ([(SEMANTIC, "u1")] if parts is not None else []))
    triangles["n"], triangles["v"] = 3, faces
    if parts is not None:
        triangles[SEMANTIC] = parts
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}"]
    header += [f"property {'float' if kind == '<f4' else 'uchar'} {name}" for name, kind in fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header += [f"property uchar {SEMANTIC}"] if parts is not None else []
    header += ["end_header", ""]
    return "\n".join(header).encode() + records.tobytes() + triangles.tobytes()


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in 0..1 -> linear (IEC 61966-2-1), float32."""
    srgb = np.asarray(srgb, np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, rgba: np.ndarray | None = None, labels: np.ndarray | None = None,
              parts: np.ndarray | None = None) -> bytes:
    """A glTF 2.0 binary of one mesh: POSITION (V, 3), float32 VEC4 COLOR_0 (`rgba`, linear 0..1, as glTF 2.0
    defines it), the float SCALAR `_SEMANTIC` (`labels`), and with `parts` (F,) one primitive per class present,
    each with its own indices and a material named after the class in its palette colour; without, one
    primitive. The primitives share the vertex attributes."""
    binary, views, accessors = bytearray(), [], []

    def accessor(array: np.ndarray, component: int, kind: str, target: int, **extra: object) -> int:
        data = np.ascontiguousarray(array).tobytes()  # float32 / uint32: every view stays 4-byte aligned
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(data), "target": target})
        binary.extend(data)
        accessors.append({"bufferView": len(views) - 1, "componentType": component, "count": len(array), "type": kind, **extra})
        return len(accessors) - 1

    positions = np.asarray(vertices, "<f4")
    attributes = {"POSITION": accessor(positions, 5126, "VEC3", 34962, min=positions.min(0).tolist(), max=positions.max(0).tolist())}
    if rgba is not None:
        attributes["COLOR_0"] = accessor(np.asarray(rgba, "<f4"), 5126, "VEC4", 34962)
    if labels is not None:
        attributes[GLB_SEMANTIC] = accessor(np.asarray(labels, "<f4"), 5126, "SCALAR", 34962)
    faces = np.asarray(faces, "<u4")
    classes = [None] if parts is None else [int(c) for c in np.unique(parts)]
    primitives, materials = [], []
    for cls in classes:
        indices = faces if cls is None else faces[parts == cls]
        primitive = {"attributes": attributes, "indices": accessor(indices.reshape(-1), 5125, "SCALAR", 34963), "mode": 4}
        if cls is not None:
            primitive["material"] = len(materials)
            colour = srgb_to_linear(np.asarray(PALETTE[cls]) / 255).tolist()
            materials.append({"name": LABEL_NAMES[cls], "pbrMetallicRoughness": {"baseColorFactor": [*colour, 1.0],
                                                                                  "metallicFactor": 0.0, "roughnessFactor": 1.0}})
        primitives.append(primitive)
    tree = {"asset": {"version": "2.0", "generator": "SAGE Portrait"}, "scene": 0, "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": "SAGE Portrait Mesh"}], "meshes": [{"name": "SAGE Portrait Mesh", "primitives": primitives}],
            "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(binary)}]}
    if materials:
        tree["materials"] = materials
    text = json.dumps(tree, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + bytes(binary)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, parts: np.ndarray | None = None,
              mtl_name: str = "mesh.mtl") -> bytes:
    """Wavefront OBJ: `v x y z [r g b]` (colours (V, 3+) uint8 written as 0..1), then the faces; with `parts` (F,)
    class ids, `mtllib mtl_name` and one `g`/`usemtl` group per class present, named after the class
    (mtl_bytes writes the library)."""
    vertices = np.asarray(vertices, np.float64)
    columns = vertices if colors is None else np.concatenate([vertices, np.asarray(colors)[:, :3] / 255.0], 1)
    row = "v" + " %.8f" * columns.shape[1] + "\n"  # 8 digits, as trimesh: with 6 a round trip met vertices closer than that
    out = ["# SAGE Portrait mesh\n"]
    if parts is not None:
        out.append(f"mtllib {mtl_name}\n")
    out.append((row * len(columns)) % tuple(columns.ravel()))
    faces = np.asarray(faces) + 1
    groups = [(None, faces)] if parts is None else [(int(c), faces[parts == c]) for c in np.unique(parts)]
    for cls, group in groups:
        if cls is not None:
            out.append(f"g {LABEL_NAMES[cls]}\nusemtl {LABEL_NAMES[cls]}\n")
        out.append(("f %d %d %d\n" * len(group)) % tuple(group.ravel()))
    return "".join(out).encode()


def mtl_bytes(classes: np.ndarray) -> bytes:
    """The OBJ's material library: one material per class id in `classes`, named after it, diffuse colour its
    palette colour (0..1)."""
    lines = ["# SAGE Portrait parts: one material per class (sage_backend/labels.py)"]
    for cls in classes:
        r, g, b = (v / 255 for v in PALETTE[int(cls)])
        lines += [f"newmtl {LABEL_NAMES[int(cls)]}", f"Kd {r:.6f} {g:.6f} {b:.6f}", "d 1.0", "illum 1"]
    return ("\n".join(lines) + "\n").encode()


def write_mesh(path: str | Path, mesh: trimesh.Trimesh, fmt: str | None = None) -> list[Path]:
    """Write the mesh (and an OBJ's .mtl beside it, same stem) atomically, all files or none; the format comes
    from the suffix unless given. Returns the paths written."""
    path = Path(path)
    files = mesh_files(mesh, (fmt or path.suffix.lstrip(".")).lower(), path.stem)
    paths = {suffix: path if i == 0 else path.with_suffix(f".{suffix}") for i, suffix in enumerate(files)}
    atomic_write_files({paths[suffix]: data for suffix, data in files.items()})
    return list(paths.values())
