"""What a check of the configuration reports: one `Finding` per thing looked at, with its severity and fix.

Shared by `config check`'s own checks (pipeline.ops.config_check) and those of the sending domain's DNS
records (pipeline.ops.sending_domain), which `verdicts config check` lists together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["ok", "note", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One result of a check: what was looked at (a setting, a DNS name), what is right or wrong, the fix."""

    severity: Severity
    subject: str
    message: str
    fix: str = ""
