"""What you need to test your own syncs.

- ``syncpoint.testing.server`` — ``LocalServer``: your pages on 127.0.0.1, with 5xx, 429 with
  ``Retry-After``, dropped connections and slow answers injected reproducibly (``FaultPlan``), and counts of
  what it served (``ServerStats``).

The stand-ins for the example programs' APIs are not here:
they live with the examples, in ``examples/servers/``.
"""
