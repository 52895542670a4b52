"""Run the dashboard with uvicorn on a socket we bind first, so ``--port 0`` can say which port it got."""

from __future__ import annotations

import socket
import sys

import uvicorn

from syncpoint.errors import UsageError
from syncpoint.stores import mask_url
from syncpoint.stores.base import Store
from syncpoint.web.app import create_app
from syncpoint.web.security import check_bind


def serve(
    store: Store, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
    allow_actions: bool = False, poll_seconds: float = 1.0,
) -> None:
    """Serve until SIGINT/SIGTERM. Prints ``dashboard: http://HOST:PORT/`` (one line, flushed) when ready."""
    check_bind(host, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    app = create_app(store, token=token, allow_actions=allow_actions, poll_seconds=poll_seconds)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    mode = "actions enabled" if allow_actions else "read-only"
    sys.stdout.write(f"dashboard: http://{shown}:{bound}/ ({mode}; store {mask_url(store.location)})\n")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
