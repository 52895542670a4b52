"""The dashboard tests' fixtures, defined in ``web_support`` (which the tests import their helpers from: a
module named ``conftest`` is ambiguous when several test folders are collected together)."""

from web_support import _web_extra, browser, page, pg_schema, servers  # noqa: F401 - fixtures

