"""The one exception type that reaches the user as a single line and exit code 2."""

import unicodedata


class UserError(Exception):
    """A bad input the user can fix: the message names the problem and the fix, on one line."""


def several(problems: list[str]) -> UserError:
    """One UserError for every problem found at once: the line itself when there is one, else a count and
    one indented line each (what `problems_of` reads back)."""
    if len(problems) == 1:
        return UserError(problems[0])
    return UserError(f"{len(problems)} problems in the config:\n  " + "\n  ".join(problems))


def problems_of(err: UserError) -> list[str]:
    """The problems one UserError names (the lines of `several`, or its one line)."""
    lines = str(err).splitlines()
    return [line.strip() for line in lines[1:]] if len(lines) > 1 and lines[0].endswith("problems in the config:") \
        else [str(err)]


def printable(text: str) -> str:
    """`text` for a terminal: control characters and line separators from the data (a `\\r`, a `\\x1e` in a
    path) escaped, so a message stays the lines it was written as; its own line breaks are kept."""
    return "".join(ch if ch == "\n" or unicodedata.category(ch) not in ("Cc", "Zl", "Zp")
                   else ascii(ch)[1:-1] for ch in text)
