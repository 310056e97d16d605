"""One exception type for user mistakes (bad config, bad input files)."""


class UserError(Exception):
    """A mistake the user can fix. Printed as one line naming the file or key, exit code 2.

    Bugs stay ordinary exceptions with their tracebacks.
    """
