"""The ``syncpoint`` command line: ``syncpoint --help`` lists the commands; docs/CLI.md describes them.

``cli`` is the click group (add subcommands with ``register``); ``main`` is the console-script entry point.
"""

from __future__ import annotations

from syncpoint.cli.main import cli, main, register

__all__ = ["cli", "main", "register"]
