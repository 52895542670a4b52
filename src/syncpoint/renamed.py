"""The one warning a renamed public name gives (docs/API.md, "Names").

An old name keeps working for a while and says, once per call site, which name replaced it. Only names an
example, the README or the docs once used are kept this way; the others were renamed outright.
"""

from __future__ import annotations

import warnings


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``. ``stacklevel`` 3 points at the caller of the
    function or property that calls this (the user's line), not at syncpoint's own code."""
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel)
