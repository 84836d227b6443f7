"""Project exceptions: every error names the file or field, the bad value and what was expected."""

from __future__ import annotations

from typing import Any


class HemotwinError(Exception):
    """Base class of every error the package raises on purpose."""


class InputError(HemotwinError, ValueError):
    """A value supplied by the user is not acceptable.

    Parameters
    ----------
    where
        The file, field or option that holds the value (e.g. ``"profile.optics.na"``).
    value
        The offending value.
    expected
        A short statement of what would have been accepted.
    """

    def __init__(self, where: str, value: Any, expected: str) -> None:
        self.where = where
        self.value = value
        self.expected = expected
        super().__init__(f"{where}: got {value!r}; expected {expected}")

    def __reduce__(self):
        # Picklable, so an error raised in a worker process reaches the parent intact.
        return (type(self), (self.where, self.value, self.expected))


class OutputExistsError(HemotwinError, FileExistsError):
    """An output would overwrite existing data and ``overwrite`` was not given."""

    def __init__(self, path: Any) -> None:
        self.path = path
        super().__init__(f"{path}: output already exists; allow overwriting to replace it "
                         "(--overwrite on the command line)")

    def __reduce__(self):
        return (type(self), (self.path,))
