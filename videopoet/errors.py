"""Errors a user can cause (bad input, bad paths, bad options).

The CLI turns any `UserError` into one line on stderr and exit status 2; every other exception is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Base class for errors caused by the user's input rather than by a bug."""
