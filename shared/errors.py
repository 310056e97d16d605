"""One exception type for user mistakes (bad config, bad input files)."""


class UserError(Exception):
    """A mistake the user can fix. Printed as one line naming the file or key, exit code 2.

    Bugs stay ordinary exceptions with their tracebacks.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
