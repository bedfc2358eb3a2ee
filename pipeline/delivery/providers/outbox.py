"""The default provider: every message becomes an ``.eml`` file, one folder per issue.

Files are named after the delivery row and written atomically, so sending the same
delivery twice (a resumed crash) replaces the file instead of making a second copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Settings
from pipeline.delivery.providers.base import CheckResult, Outcome, OutgoingMessage, ProviderConfigError, SendOutcome
from pipeline.delivery.providers.mime import build_mime
from pipeline.errors import InvalidInput
from pipeline.files import written
from pipeline.store.models import utcnow


class OutboxProvider:
    name = "outbox"
    max_batch = 1000
    idempotent = True

    def __init__(self, settings: Settings) -> None:
        self.root = settings.outbox_dir
        self.from_email = settings.from_email
        self.from_name = settings.from_name

    def folder(self, campaign: str) -> Path:
        return self.root / campaign

    def send_batch(self, messages: Sequence[OutgoingMessage], *, campaign: str) -> list[SendOutcome]:
        folder = self.folder(campaign)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderConfigError(
                f"cannot create the outbox folder {folder}: {exc.strerror} (set VERDICTS_OUTBOX_DIR)"
            ) from None
        return [self._write(folder, m) for m in messages]

    def _write(self, folder: Path, message: OutgoingMessage) -> SendOutcome:
        data = build_mime(message, from_email=self.from_email, from_name=self.from_name, date=utcnow()).as_bytes()
        # Deliveries are named by their row (a re-send replaces the file); others by their Message-ID.
        local = message.message_id.strip("<>").partition("@")[0].rpartition(".")[2]
        stem = f"{message.delivery_id:08d}" if message.delivery_id is not None else local
        target = folder / f"{stem}.eml"
        try:
            with written(target, binary=True) as fh:
                fh.write(data)
        except InvalidInput as exc:  # this message failed; the others of the batch stand
            return SendOutcome(Outcome.failed, error=str(exc))
        return SendOutcome(Outcome.sent, provider_message_id=str(target))

    def check(self) -> CheckResult:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / ".write-check"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ProviderConfigError(f"the outbox folder {self.root} is not writable: {exc.strerror}") from None
        return CheckResult(f"outbox: messages are written to {self.root.resolve()}")

    def close(self) -> None:
        pass
