"""What you need to test your own syncs: a local API that fails like real ones, and a crash loop.

- ``syncpoint.testing.server`` — ``LocalServer``: your pages on 127.0.0.1, with 5xx, 429 with
  ``Retry-After``, dropped connections and slow answers injected reproducibly (``FaultPlan``), and counts of
  what it served (``ServerStats``).
- ``syncpoint.testing.crashloop`` — ``crash_loop``: runs your command, ``kill -9``s it at random moments
  and at the points your program marks with ``crash_point``, resumes it to the end, and reports what it
  saw, so that a test can assert that nothing was lost and nothing done twice.

docs/TESTING.md shows both in a pytest test. The stand-ins for the example programs' APIs are not here:
they live with the examples, in ``examples/servers/``.
"""
