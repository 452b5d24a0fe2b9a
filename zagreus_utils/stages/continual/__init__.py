"""Stage 09, continual pretraining (optional): the base checkpoint continued on a second language,
against training from scratch (:mod:`.stage`)."""

from .stage import run

__all__ = ["run"]
