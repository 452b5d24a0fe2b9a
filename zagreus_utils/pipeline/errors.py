"""User-facing errors: one clear line naming what is wrong and how to fix it."""


class ZagreusError(Exception):
    """A mistake in the user's input (file, key, value), not a bug.

    The CLI prints it as a single ``error:`` line and exits non-zero; notebooks show it as is.
    """
