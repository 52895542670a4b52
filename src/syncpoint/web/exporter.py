"""``--metrics-port``: a job's own process serves ``/metrics`` for its job, for a long run no server watches.

Started by the run's first commit (see ``syncpoint.samples``) in a daemon thread of prometheus-client's
own HTTP server, on 127.0.0.1 unless ``SYNCPOINT_METRICS_HOST`` names another address (the metrics hold
job names and counts, nothing that acts on the store). It reads the run's store like ``syncpoint serve``.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, start_http_server

from syncpoint.stores.base import Store
from syncpoint.web.metrics import StoreCollector

log = logging.getLogger("syncpoint.web")
HOST_VAR = "SYNCPOINT_METRICS_HOST"

_started: dict[int, str] = {}  # port -> job: one exporter per port and process


def start_exporter(store: Store, job: str, port: int) -> None:
    """Serve ``/metrics`` of ``job`` on ``port`` (once per process; a second run of the same job reuses it)."""
    if port in _started:
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, job))
    host = os.environ.get(HOST_VAR, "127.0.0.1")
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("cannot serve metrics on %s:%d (%s); the run goes on without them", host, port, exc.strerror)
        return
    _started[port] = job
    log.info("metrics of job %s on http://%s:%d/metrics", job, host, port)
