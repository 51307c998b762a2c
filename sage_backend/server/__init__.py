"""The SAGE wire protocol v1 server: codec, worker, ROUTER loop."""
