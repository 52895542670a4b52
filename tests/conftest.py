"""Makes ``tests/`` importable so test modules can ``import helpers``."""
