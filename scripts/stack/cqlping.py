"""One CQL query over the native protocol v4 on a raw socket (standard library only).

Used as the readiness probe of the local Cassandra (and for its version):
STARTUP, optional PLAIN authentication, then
`SELECT release_version FROM system.local`.

Why not the driver in .venv: scripts/stack runs under the system Python as well (`make status`,
`make down`, and `make up` before .venv exists is the bootstrap that creates it), so it imports
nothing outside the standard library; a readiness probe needs this one request only.

    python3 -m scripts.stack.cqlping [host:port]
"""
from __future__ import annotations

import socket
import struct
import sys

from .core import recv_exact

V4 = 0x04
ERROR, STARTUP, READY, AUTHENTICATE, QUERY, RESULT, AUTH_RESPONSE, AUTH_SUCCESS = (
    0x00, 0x01, 0x02, 0x03, 0x07, 0x08, 0x0F, 0x10)
ROWS = 0x0002
ONE = 0x0001


def _request(sock: socket.socket, opcode: int, body: bytes, stream: int = 0) -> tuple[int, bytes]:
    # Frame header v4: version, flags, stream (int16), opcode, body length (int32)
    sock.sendall(struct.pack(">BBhBi", V4, 0, stream, opcode, len(body)) + body)
    _ver, _flags, _stream, op, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    resp = recv_exact(sock, length)
    if op == ERROR:
        code, n = struct.unpack_from(">iH", resp, 0)
        raise RuntimeError(f"CQL error 0x{code:04x}: {resp[6:6 + n].decode()}")
    return op, resp


def _string(b: bytes, i: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">H", b, i)
    return b[i + 2:i + 2 + n].decode(), i + 2 + n


def query_one(cql: str, host: str = "127.0.0.1", port: int = 9042, timeout: float = 5,
              username: str | None = None, password: str | None = None) -> str | None:
    """Run `cql` and return the first column of the first row as text (or None)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        # STARTUP body: [string map] {"CQL_VERSION": "3.0.0"}
        k, v = b"CQL_VERSION", b"3.0.0"
        op, _ = _request(s, STARTUP, struct.pack(">HH", 1, len(k)) + k + struct.pack(">H", len(v)) + v)
        if op == AUTHENTICATE:
            if username is None:
                raise RuntimeError("server requires authentication")
            token = b"\0" + username.encode() + b"\0" + (password or "").encode()  # SASL PLAIN
            op, _ = _request(s, AUTH_RESPONSE, struct.pack(">i", len(token)) + token)
            if op != AUTH_SUCCESS:
                raise RuntimeError(f"unexpected opcode 0x{op:02x} after AUTH_RESPONSE")
        elif op != READY:
            raise RuntimeError(f"unexpected opcode 0x{op:02x} after STARTUP")
        # QUERY body: [long string] query, [short] consistency, [byte] flags (none)
        q = cql.encode()
        op, b = _request(s, QUERY, struct.pack(">i", len(q)) + q + struct.pack(">HB", ONE, 0), stream=1)
    if op != RESULT or struct.unpack_from(">i", b, 0)[0] != ROWS:
        raise RuntimeError("query did not return rows")
    # Rows metadata: flags, columns_count, [global keyspace/table], then per column: [ks, table], name, type
    flags, ncols = struct.unpack_from(">ii", b, 4)
    i = 12
    if flags & 0x0002:                   # has_more_pages: skip paging state [bytes]
        (n,) = struct.unpack_from(">i", b, i)
        i += 4 + max(n, 0)
    if flags & 0x0004:                   # no_metadata
        raise RuntimeError("result without metadata")
    glob = flags & 0x0001
    if glob:
        _, i = _string(b, i)
        _, i = _string(b, i)
    for _ in range(ncols):
        if not glob:
            _, i = _string(b, i)
            _, i = _string(b, i)
        _, i = _string(b, i)
        (type_id,) = struct.unpack_from(">H", b, i)
        i += 2
        if type_id == 0x0000:            # custom type: class name follows
            _, i = _string(b, i)
        elif type_id >= 0x0020:          # collections/UDT/tuple: not needed for our probes
            raise RuntimeError("only simple column types are supported")
    (nrows,) = struct.unpack_from(">i", b, i)
    if nrows == 0:
        return None
    (n,) = struct.unpack_from(">i", b, i + 4)
    return None if n < 0 else b[i + 8:i + 8 + n].decode()


def release_version(host: str = "127.0.0.1", port: int = 9042, timeout: float = 5) -> str:
    v = query_one("SELECT release_version FROM system.local", host, port, timeout)
    if not v:
        raise RuntimeError("system.local has no release_version")
    return v


if __name__ == "__main__":
    h, _, p = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9042").rpartition(":")
    print(release_version(h or "127.0.0.1", int(p)))
