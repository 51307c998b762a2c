"""CURVE key files and the client allow-list, in ZeroMQ's own certificate format (`zmq.auth`).

`NAME.key` holds a public key (give it away); `NAME.key_secret` holds both halves and must stay private.
The server refuses a secret file that is really a public key, whose halves do not match, or that other
users can read. With an allow-list folder of clients' `*.key` files, pyzmq's authenticator (ZAP) refuses
every other client during the handshake: it gets no service at all.
"""
from __future__ import annotations

import errno

import logging
import os
import stat
import tempfile
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.z85 import Z85CHARS

from sage_backend.files import atomic_write_bytes, write_error


HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


# A peer that accepts the connection but never greets in ZMTP (an HTTP server, say) is given up after
# HANDSHAKE_IVL_MS; a ZeroMQ peer greets within milliseconds, CURVE included.
HANDSHAKE_IVL_MS = 2000
NOT_ZEROMQ = (f"{{where}} accepted the connection but did not answer in ZeroMQ within {HANDSHAKE_IVL_MS / 1000:g} s: "
              "another program listens on that port, not a SAGE backend (check the address)")


def handshake_failure(event: int, value: int, where: str, curve: bool, key_option: str, refused: str) -> str:
    """One line naming the setting to fix after a handshake with `where` failed (a socket monitor's `event`
    and `value`; "" for any other event). `curve`: whether this side gave a server key (via `key_option`);
    `refused`: what the server's allow-list refused, and what to do. CURVE on one side only is a mechanism mismatch,
    but the server may close first without saying why: then the likely cause is named. (The add-on's client
    classifies the same events for its preferences.)"""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"{where} refused {refused}"
    if event not in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        return ""
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return (f"{where} does not use CURVE encryption: drop {key_option}" if curve else
                f"{where} uses CURVE encryption: give its public key (server.key) with {key_option}")
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and value == errno.EAGAIN:  # HANDSHAKE_IVL ran out
        return NOT_ZEROMQ.format(where=where)
    if not curve:
        return f"{where} broke off the handshake: it likely uses CURVE encryption; give its server.key with {key_option}"
    return (f"{where} broke off the CURVE handshake: {key_option} is likely not its server.key, or it "
            f"does not use CURVE encryption (then drop {key_option})")


def write_keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """Create NAME.key (public, 0644) and NAME.key_secret (0600) in `folder`; returns their paths."""
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    with tempfile.TemporaryDirectory() as private:  # 0700: the secret is never readable by others, even briefly
        try:
            public_tmp, secret_tmp = zmq.auth.create_certificates(private, name)
        except OSError as exc:  # the pair is made in a private folder first: name the files it was for
            raise write_error(secret, exc) from None
        atomic_write_bytes(secret, Path(secret_tmp).read_bytes(), mode=0o600)
        atomic_write_bytes(public, Path(public_tmp).read_bytes(), mode=0o644)
    return public, secret


def _is_z85_key(key: bytes | None) -> bool:
    """Whether `key` is a CURVE key as certificates hold it: 32 bytes in Z85, 40 characters."""
    return key is not None and len(key) == 40 and all(c in Z85CHARS for c in key)


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError:
        raise ValueError(f"{path}: cannot read the CURVE key") from None
    except ValueError:
        public = secret = None
    if not _is_z85_key(public) or not (secret is None or _is_z85_key(secret)):
        raise ValueError(f"{path}: not a CURVE certificate (create a pair with `sage-backend keys --out DIR`)")
    return public, secret


def read_public_key(path: Path) -> bytes:
    """The z85 public key of a certificate (public or secret file)."""
    return _load(path)[0]


def read_secret_key(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret file; ValueError (one line) if it is a public key, its halves do
    not match, or others can read it."""
    public, secret = _load(path)
    if secret is None:
        raise ValueError(f"{path}: this is a public key; give the secret half (NAME.key_secret), and never hand it to clients")
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{path}: its public and secret keys do not belong together")
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise ValueError(f"{path}: the secret key is readable by other users (mode {mode:04o}); run chmod 600 {path}")
    return public, secret


def allow_list(context: zmq.Context, folder: Path) -> ThreadAuthenticator:
    """Start pyzmq's authenticator on `context`: only clients whose public key is a `*.key` file in `folder`
    complete the CURVE handshake. Stop it when the server closes."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of client public keys")
    keys = zmq.auth.load_certificates(folder)
    if not keys:
        raise ValueError(f"{folder}: holds no client public keys (*.key files from `sage-backend keys --name CLIENT`)")
    authenticator = ThreadAuthenticator(context, log=logging.getLogger("sage_backend.auth"))
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(folder))
    return authenticator
