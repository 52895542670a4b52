"""``python -m syncpoint``: the same as the ``syncpoint`` command."""

from __future__ import annotations

from syncpoint.cli.main import main

if __name__ == "__main__":
    main()
