"""One pre-flight check's row (name, ok, detail, fix): what :mod:`zagreus_utils.model.preflight`
and :mod:`zagreus_utils.model.start_checks` return."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool | None  # None: could not be verified here (not a failure)
    detail: str
    fix: str = ""

    @property
    def status(self) -> str:
        return {True: "ok", False: "FAILED", None: "unverified"}[self.ok]
