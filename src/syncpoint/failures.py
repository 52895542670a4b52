"""Which failures a resume retries — the one rule, in one place.

A failure (of an item, a slice or a whole task) is **retryable unless declared permanent**:

1. ``retryable=`` given explicitly to ``item_failed`` / ``fail`` wins;
2. an exception's own ``retryable`` attribute (``syncpoint.http``'s errors carry one: 5xx, 429 and network
   errors are retryable, 404 is not);
3. the job's ``permanent_errors``: exception types, or predicates ``(exc) -> bool``, that make a failure
   permanent (``Job(..., permanent_errors=[ValueError, lambda e: "gone" in str(e)])``);
4. otherwise retryable — an unexpected exception is treated as transient, so nothing is given up silently.

A run that ends with retryable failures (items or tasks) ends ``failed`` (exit 1), saying how many; a plain
``--resume`` offers exactly those again and completes once they succeed. Permanent failures let the run
complete (exit 0); they are counted in its final line and in ``runs list``/``runs show``, and
``--retry-failed`` retries them on the same run, even after it completed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeAlias

PermanentRule: TypeAlias = "type[BaseException] | Callable[[BaseException], bool]"


class FailureRule:
    """Decides whether an exception is retryable, from the job's ``permanent_errors``."""

    def __init__(self, permanent: Iterable[PermanentRule] = ()) -> None:
        self.types: tuple[type[BaseException], ...] = ()
        self.predicates: list[Callable[[BaseException], bool]] = []
        for rule in permanent:
            if isinstance(rule, type) and issubclass(rule, BaseException):
                self.types += (rule,)
            elif callable(rule):
                self.predicates.append(rule)  # type: ignore[arg-type]
            else:
                raise TypeError(f"permanent_errors takes exception types or predicates, not {rule!r}")

    def retryable(self, error: BaseException) -> bool:
        declared = getattr(error, "retryable", None)
        if isinstance(declared, bool):
            return declared
        if isinstance(error, self.types):
            return False
        return not any(predicate(error) for predicate in self.predicates)


def describe(error: BaseException | str) -> str:
    """The message stored with a failure: the text, or the exception's message, or its type's name."""
    return error if isinstance(error, str) else (str(error) or type(error).__name__)
