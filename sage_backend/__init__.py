"""SAGE Portrait backend: the SAGE generator, its renderer, checkpoints, meshes and the ZeroMQ server."""

__version__ = "0.1.0"
