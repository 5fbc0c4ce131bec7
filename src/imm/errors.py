"""The one exception type that reaches the user as a single line and exit code 2."""


class UserError(Exception):
    """A bad input the user can fix: the message names the problem and the fix, on one line."""
