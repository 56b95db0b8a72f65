"""The engine process: ``python -m wyoming_kokoro_gguf.server.engine_process FD``.

The server starts it with subprocess, not multiprocessing: multiprocessing's spawn also starts
a resource-tracker process (13 MB RSS, measured) that the engine never uses, memory a small
board does not have to spare.  FD is the child's end of a socket pair; the first message on it
is (args, blends), then the protocol of ``server.engine_worker_main``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

ENTRY = "wyoming_kokoro_gguf.server.engine_process"


def start(args: Any, blends: list[tuple[str, str]]) -> tuple[subprocess.Popen, Connection]:
    """Start the engine process and hand it (args, blends); its process and the server's end."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", ENTRY, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,  # stdio:// serves Wyoming on the server's stdin and stdout
            stdout=2,  # whatever the engine prints goes to the log, never into the Wyoming stream
        )
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    conn.send((args, blends))
    return proc, conn


def main(argv: list[str] | None = None) -> None:
    """Read (args, blends) from the inherited socket, then serve the engine on it."""
    from wyoming_kokoro_gguf.server.app import engine_worker_main

    conn: Any = Connection(int((argv or sys.argv)[1]))
    try:
        args, blends = conn.recv()
    except (EOFError, OSError):  # the server went away before sending them
        return
    engine_worker_main(conn, args, blends)


if __name__ == "__main__":
    main()
