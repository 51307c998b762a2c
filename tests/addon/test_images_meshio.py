"""Pixel conversions and the PLY reader, without bpy (numpy only, as in Blender)."""
import numpy as np
import pytest
import trimesh

from blender_addon import images, meshio
from blender_addon.protocol import Blob
from sage_backend.labels import PALETTE


def test_drawing_rows_flip_to_bottom_up_rgba():
    drawing = np.zeros((3, 2, 3), np.uint8)
    drawing[0] = 255  # top row white
    drawing[2, 1] = (255, 0, 51)
    rgba = images.drawing_rgba(drawing)
    assert rgba.dtype == np.float32 and rgba.shape == (3, 2, 4)
    assert np.all(rgba[2, :, :3] == 1.0) and np.all(rgba[..., 3] == 1.0)  # Blender's last row is the top
    np.testing.assert_allclose(rgba[0, 1, :3], (1.0, 0.0, 0.2))


def test_semantic_map_takes_exact_palette_colours_and_flips():
    labels = np.array([[13, 13], [1, 18]], np.uint8)
    rgba = images.semantic_rgba(labels, PALETTE)
    np.testing.assert_allclose(rgba[1, 0, :3] * 255, PALETTE[13], atol=1e-4)
    np.testing.assert_allclose(rgba[0, 1, :3] * 255, PALETTE[18], atol=1e-4)
    assert np.all(images.semantic_rgba(np.array([[200]], np.uint8), PALETTE) == 1.0)  # unknown ids show white


def test_blob_array_and_bad_shapes():
    blob = Blob("drawing", "uint8", (2, 2, 3), "raw", bytes(range(12)))
    assert images.blob_array(blob)[1, 1, 2] == 11
    with pytest.raises(ValueError, match="ply file"):
        images.blob_array(Blob("mesh", "uint8", (3,), "ply", b"ply"))
    with pytest.raises(ValueError, match="HxWx3"):
        images.drawing_rgba(np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("encoding", ["binary", "ascii"])
def test_ply_reader_reads_trimesh_output_with_colours_and_labels(encoding):
    mesh = trimesh.creation.box()
    labels = np.arange(len(mesh.vertices), dtype=np.uint8) % 19
    mesh.visual.vertex_colors = np.concatenate([np.array(PALETTE, np.uint8)[labels], np.full((len(labels), 1), 255, np.uint8)], 1)
    mesh.vertex_attributes["label"] = labels
    data = mesh.export(file_type="ply", encoding=encoding)
    vertices, triangles, props, _ = meshio.read_ply(data if isinstance(data, bytes) else data.encode())
    np.testing.assert_allclose(vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(triangles, mesh.faces)
    np.testing.assert_array_equal(meshio.labels(props), labels)
    np.testing.assert_allclose(meshio.vertex_colors(props)[:, :3] * 255, np.array(PALETTE)[labels], atol=1e-3)


def test_ply_reader_reads_the_backends_per_face_classes():
    from sage_backend.mesh import face_labels, ply_bytes

    mesh = trimesh.creation.icosphere(subdivisions=1)
    labels = (np.arange(len(mesh.vertices)) % 3 + 1).astype(np.uint8)
    parts = face_labels(mesh.faces, labels)
    _, triangles, vertex_props, face_props = meshio.read_ply(ply_bytes(mesh.vertices, mesh.faces, None, labels, parts))
    np.testing.assert_array_equal(triangles, mesh.faces)
    np.testing.assert_array_equal(meshio.labels(vertex_props), labels)
    np.testing.assert_array_equal(meshio.labels(face_props), parts)


def test_ply_reader_fans_polygons_and_rejects_garbage():
    ply = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n"
    _, triangles, props, _ = meshio.read_ply(ply)
    assert triangles.tolist() == [[0, 1, 2], [0, 2, 3]] and meshio.vertex_colors(props) is None
    with pytest.raises(ValueError, match="not a PLY"):
        meshio.read_ply(b"solid stl")
