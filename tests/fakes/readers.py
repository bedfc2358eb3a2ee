"""Many confirmed readers in one INSERT: seeding thousands through the service would dominate a test or a benchmark."""

from __future__ import annotations

import sqlalchemy as sa

from pipeline.store.db import session_scope
from pipeline.store.models import utcnow
from subscribers.models import Subscriber, SubscriberStatus


def add_readers(database_url: str, n: int, start: int = 0) -> None:
    now = utcnow()
    rows = [
        {
            "email": f"reader{i}@example.com",
            "name": f"Reader {i}",
            "status": SubscriberStatus.confirmed.value,
            "source": "cli",
            "created_at": now,
            "confirmed_at": now,
        }
        for i in range(start, start + n)
    ]
    with session_scope(database_url) as session:
        session.execute(sa.insert(Subscriber.__table__), rows)
        session.commit()
