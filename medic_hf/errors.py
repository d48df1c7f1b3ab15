"""Exceptions raised by medic_hf. Each subclasses a builtin, so callers may catch either."""


class MedicDataError(ValueError):
    """A MEDIC TSV file or one of its rows is invalid: a bad label, a missing image or an unsafe path.

    Attributes:
        reason: the kind of problem, e.g. `"unknown label"`, used to count skipped rows.
        skippable: whether `on_bad_row="skip"` may skip the row. Unsafe image paths and missing columns
            are never skippable.
        row: the offending row as `{"file", "line", "column", "value"}`, when one row is at fault.
    """

    def __init__(self, message: str, *, reason: str = "invalid file", skippable: bool = False, row: dict | None = None):
        super().__init__(message)
        self.reason = reason
        self.skippable = skippable
        self.row = row


class MedicUsageError(ValueError):
    """A command-line option is missing, unknown or invalid."""
