"""``syncpoint demo``: a short sync against a local API, to interrupt with Ctrl+C and resume.

- ``sync`` — the sync itself, written with the public API only: the code to copy (docs/DEMO.md shows it).
- ``api`` — the paged JSON API it syncs, served on 127.0.0.1 by ``syncpoint.testing.server.LocalServer``.
- ``command`` — the ``syncpoint demo`` command: starts the API, runs the sync as a job, says what to do next.
"""
