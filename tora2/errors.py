"""The project's error types.

``InputError`` is bad user input (a file, a value, a flag): the CLI prints its message as one line
and exits with code 2. Messages say what was wrong, which value, and what to do.
"""


class Tora2Error(Exception):
    """Base class of every error tora2 raises on purpose."""


class InputError(Tora2Error, ValueError):
    """Bad input from the user: malformed files, out-of-range values, missing weights."""
