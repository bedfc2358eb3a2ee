"""The default provider: every message becomes an ``.eml`` file, one folder per issue.

Files are named after the delivery row and written atomically, so sending the same
delivery twice (a resumed crash) replaces the file instead of making a second copy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Settings
from pipeline.models import utcnow
from pipeline.providers.base import OutgoingMessage, ProviderError, SendOutcome
from pipeline.providers.mime import build_mime


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
            raise ProviderError(f"cannot create the outbox folder {folder}: {exc.strerror}", permanent=True) from None
        return [self._write(folder, m) for m in messages]

    def _write(self, folder: Path, message: OutgoingMessage) -> SendOutcome:
        data = build_mime(message, from_email=self.from_email, from_name=self.from_name, date=utcnow()).as_bytes()
        stem = f"{message.delivery_id:08d}" if message.delivery_id is not None else "test-" + message.message_id.strip("<>").split("@")[0]
        target = folder / f"{stem}.eml"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise ProviderError(f"cannot write {target}: {exc.strerror}", permanent=True) from None
        return SendOutcome(ok=True, provider_message_id=str(target))

    def close(self) -> None:
        pass
