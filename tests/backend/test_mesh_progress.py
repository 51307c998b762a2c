"""A mesh that asks for `progress` hears how far its density grid is while it works, in process and through
worker processes; one that does not gets its one reply, as before."""
import pytest

from tests.backend.test_server import Client

pytestmark = pytest.mark.usefixtures("serve_mode")


def test_a_mesh_that_asks_for_progress_hears_it_before_its_file(backend) -> None:
    client = Client(backend.address)
    try:
        rid = client.send("mesh", style="line", seed=1, grid=128, format="ply", progress=True)
        fractions = []
        while True:
            header, blobs = client.recv(timeout=120)
            assert header["id"] == rid and header["ok"], header
            if "progress" not in header:
                break
            fractions.append(header["progress"])
            assert not blobs
        assert fractions and fractions == sorted(fractions) and all(0 <= f < 1 for f in fractions), fractions
        assert header["vertices"] > 0 and blobs[0].startswith(b"ply")
        header, blobs = client.call("mesh", style="line", seed=1, grid=32, format="ply")  # not asked: one reply
        assert "progress" not in header and header["vertices"] > 0
    finally:
        client.close()
