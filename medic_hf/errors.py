"""Exceptions raised by medic_hf. Each subclasses a builtin, so callers may catch either."""


class MedicDataError(ValueError):
    """A MEDIC TSV file or one of its rows is invalid: a bad label, a missing image or an unsafe path."""


class MedicUsageError(ValueError):
    """A command-line option is missing, unknown or invalid."""
