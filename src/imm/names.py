"""Names that become paths or HTML: one pattern for every one of them, checked when a config loads.

A run `name`, an arm (built-in or under `merge_arms`), a merge operator and a task are folder names,
file names and HTML anchors at once. Each must match `NAME_PATTERN`: a letter or digit, then at most
63 letters, digits, `_`, `-` or `.`. No `/`, no `..` prefix, no quote, no `<`: a name cannot leave the
run folder or escape the report page.
"""

from __future__ import annotations

import re

from imm.errors import UserError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_NAME = re.compile(NAME_PATTERN)


def is_name(text: object) -> bool:
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def check_name(text: object, what: str) -> str:
    """`text` when it matches NAME_PATTERN, else one line naming `what` (e.g. 'merge_arms key') and the rule."""
    if not is_name(text):
        raise UserError(f"{what} {text!r} is not a plain name: use a letter or digit, then up to 63 letters, "
                        f"digits, '_', '-' or '.' (e.g. imm_half)")
    return text
