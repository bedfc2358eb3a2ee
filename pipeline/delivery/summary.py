"""What one send reports: the counts of a run over an issue's ledger and the line that says them.
Filled by the campaign loop (``send``), added up across sender processes (``parallel``) and read
by the weekly job, the scheduler and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SendSummary:
    issue_id: int
    audience: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    unknown: int = 0  # left by a dead sender on a provider that cannot dedupe: check before resending
    requeued: int = 0  # left by a dead sender and re-sent safely
    resent_unknown: int = 0  # left by a dead sender mid-request and re-sent anyway (AFTER_CRASH=resend)
    remaining: int = 0  # still pending, or claimed by another live sender
    elsewhere: int = 0  # of those, claimed by another sender when this one stopped
    finished: bool = False
    already_sent: bool = False  # the issue was sent before this run
    seconds: float = 0.0
    carried: dict[str, int] = field(default_factory=dict)  # provider name → messages it accepted
    primary: str = ""

    def line(self) -> str:
        if self.already_sent:
            return f"issue {self.issue_id} was sent before, to its audience of {self.audience:,}: nothing to do"
        parts = [
            f"issue {self.issue_id}: sent {self.sent:,}",
            f"failed {self.failed:,}",
            f"suppressed {self.suppressed:,}",
        ]
        if self.requeued:
            parts.append(f"re-sent after a crash {self.requeued:,}")
        if self.resent_unknown:
            parts.append(
                f"{self.resent_unknown:,} deliveries with unknown outcome re-sent after a crash "
                "(a reader may have two copies)"
            )
        if self.unknown:
            parts.append(f"{self.unknown:,} deliveries with unknown outcome")
        if len(self.carried) > 1 or set(self.carried) - {self.primary}:
            parts.append("carried by " + ", ".join(f"{name} {n}" for name, n in self.carried.items()))
        if self.finished:
            parts.append("finished")
        else:
            # Another sender holding rows finishes them: running again now would only wait for it.
            parts.append(
                f"{self.remaining:,} not yet sent"
                + (f" ({self.elsewhere:,} claimed by another sender)" if self.elsewhere else "")
            )
        return ", ".join(parts) + f" ({self.seconds:.1f}s)"
