"""CURVE keys for a backend that encrypts (`sage-backend serve --curve-secret`), read from ZeroMQ certificate
files (`zmq.auth`'s format, which `sage-backend keys` writes). bpy-free.

The add-on needs the server's public key (`server.key`) and, for a server with an allow-list
(`--curve-clients DIR`), the artist's own `NAME.key_secret` whose `NAME.key` is in DIR. It refuses the same
files the backend's reader (sage_backend/server/curve.py) refuses, with one line naming the file and what to
do; tests/addon/test_curve.py proves the two readers agree.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

try:
    import zmq
    import zmq.auth
    from zmq.utils.z85 import Z85CHARS
except ImportError:  # client.py says how to install pyzmq; nothing here runs without it
    zmq = None

SECRET_SUFFIX = "_secret"  # NAME.key_secret holds both halves, NAME.key the public one


@dataclass(frozen=True)
class CurveKeys:
    """What a client socket needs for CURVE: the server's public key, and this client's (public, secret) pair
    with the file it came from; `client` None means a throwaway pair (served only without an allow-list).
    Keys are z85 bytes (40 characters)."""

    server: bytes
    client: tuple[bytes, bytes] | None = None
    client_file: str = ""

    @property
    def client_public_file(self) -> str:
        """The public key file that goes into the server's --curve-clients folder: NAME.key for NAME.key_secret."""
        name = os.path.basename(self.client_file)
        return name[: -len(SECRET_SUFFIX)] if name.endswith(SECRET_SUFFIX) else f"the public key of {name}"


def _load(path: str) -> tuple[bytes, bytes | None]:
    if zmq is None:
        raise ValueError("pyzmq is not installed in Blender's Python: CURVE keys cannot be read")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError:
        raise ValueError(f"{path}: cannot read the CURVE key (check the path in the add-on preferences)") from None
    except ValueError:  # no public-key line
        public = secret = None
    if not _is_z85_key(public) or not (secret is None or _is_z85_key(secret)):
        raise ValueError(f"{path}: not a CURVE certificate (keys come from `sage-backend keys --out DIR`)")
    return public, secret


def _is_z85_key(key: bytes | None) -> bool:
    """Whether `key` is a CURVE key as certificates hold it: 32 bytes in Z85, 40 characters."""
    return key is not None and len(key) == 40 and all(c in Z85CHARS for c in key)


def read_public_key(path: str) -> bytes:
    """The z85 public key of a certificate (a public NAME.key or a NAME.key_secret); ValueError (one line)."""
    return _load(path)[0]


def read_secret_key(path: str) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a NAME.key_secret file; ValueError (one line) if it is a public key, its
    halves do not match, or other users can read it."""
    public, secret = _load(path)
    if secret is None:
        raise ValueError(f"{path}: this is a public key; the add-on's Client Key is your NAME.key_secret "
                         f"(its NAME.key goes into the backend's --curve-clients folder)")
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{path}: its public and secret keys do not belong together; make a new pair with "
                         f"`sage-backend keys --out DIR --name NAME`")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if os.name == "posix" and mode & 0o077:
        raise ValueError(f"{path}: the secret key is readable by other users (mode {mode:04o}); run chmod 600 {path}")
    return public, secret


def load_keys(server_key_file: str, client_key_file: str = "") -> CurveKeys | None:
    """The keys for a connection from the add-on's settings: None without a server key file (a plain
    connection); a client key file without a server key file is an error (ValueError, one line)."""
    if not server_key_file:
        if client_key_file:
            raise ValueError("a Client Key is set but no Server Key: set the backend's server.key in the add-on preferences")
        return None
    server = read_public_key(server_key_file)
    client = read_secret_key(client_key_file) if client_key_file else None
    return CurveKeys(server, client, client_key_file)
