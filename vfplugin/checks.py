"""A host readiness check's result, shared by ``vfctl doctor`` and the per-area check functions it calls."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str  # what was checked, e.g. "IOMMU enabled"
    status: str  # OK, WARN or FAIL
    detail: str = ""  # what was found
    fix: str = ""  # the exact command (or edit) that fixes a WARN/FAIL

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}"
        if self.detail:
            text += f": {self.detail}"
        if self.fix and self.status != OK:
            text += f"  -> fix: {self.fix}"
        return text
