"""``syncpoint serve``: the web dashboard and Prometheus metrics over the store (needs the web extra)."""

from __future__ import annotations

import click

from syncpoint.cli.common import CliContext, pass_cli

TOKEN_VAR = "SYNCPOINT_WEB_TOKEN"  # also syncpoint.web.security.TOKEN_VAR (not imported: the extra may be absent)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free one; the line printed at start names it).")
@click.option("--token", envvar=TOKEN_VAR, show_envvar=True, metavar="TOKEN",
              help="Require this token (16+ characters): ?token=TOKEN once in a browser, or Authorization: Bearer.")
@click.option("--allow-actions", is_flag=True,
              help="Enable deleting runs and resetting state from the pages (each asks for confirmation).")
@click.option("--poll", "poll_seconds", type=click.FloatRange(0.25, 60), default=1.0, show_default=True,
              metavar="S", help="Seconds between a live run page's updates.")
@pass_cli
def serve(cli: CliContext, host: str, port: int, token: str | None, allow_actions: bool, poll_seconds: float) -> None:
    """Serve the dashboard: jobs, runs (live), history charts, /api/... and /metrics. Read-only by default.

    \b
      syncpoint serve                             http://127.0.0.1:8765/
      syncpoint --store postgresql://… serve --host 0.0.0.0 --token "$TOKEN"
    """
    from syncpoint.web import require

    require()
    from syncpoint.web.security import check_bind
    from syncpoint.web.server import serve as run_server

    check_bind(host, token)  # before opening the store: a refused address is said at once
    run_server(cli.store(), host=host, port=port, token=token, allow_actions=allow_actions,
               poll_seconds=poll_seconds)
