"""The send without its database: our provider code alone, fed readers made up in memory.

``benchmarks.scale`` runs it for rows whose database is ``none``, as a child process in the
CLI's place, with the CLI's environment: ``python -m benchmarks.alone READERS``. Each reader's
message is built and handed over in batches as the campaign loop does it (one batch with the
provider while the next is built), with no claim and no record. Beside the CLI's row, the
difference is what the ledger costs; beside the ceiling, what building and posting the messages
costs.
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from pipeline.config import Settings
from pipeline.content.issues import build_issue
from pipeline.delivery.messages import build_message
from pipeline.delivery.providers import SendOutcome, get_provider
from pipeline.email.render import Recipient, RenderedIssue, render_issue
from pipeline.heap import steady_for_a_send
from pipeline.store.db import session_scope


def rendered_issue(settings: Settings) -> RenderedIssue:
    """This week's issue of the database's content, built and rendered: what the ceiling's body and this send carry."""
    with session_scope(settings.database_url) as session:
        issue = build_issue(session, now=datetime.now(UTC), tz=settings.tz, max_comparisons=5).issue
        return render_issue(session, issue, settings)


def send_alone(settings: Settings, readers: int) -> int:
    """Messages the provider accepted, of ``readers`` named like the seeded ones (``reader{i}@example.com``)."""
    rendered = rendered_issue(settings)
    provider = get_provider(settings)
    sent = 0
    flight: Future[list[SendOutcome]] | None = None
    try:
        with steady_for_a_send(), ThreadPoolExecutor(1, thread_name_prefix="courier") as courier:
            for start in range(0, readers, provider.max_batch):
                batch = [
                    build_message(
                        rendered,
                        Recipient(i, f"reader{i}@example.com", f"Reader {i}"),
                        settings,
                        delivery_id=i,
                        campaign="bench",
                    )
                    for i in range(start, min(readers, start + provider.max_batch))
                ]
                if flight is not None:
                    sent += sum(o.ok for o in flight.result())
                flight = courier.submit(provider.send_batch, batch, campaign="bench")
            if flight is not None:
                sent += sum(o.ok for o in flight.result())
    finally:
        provider.close()
    return sent


if __name__ == "__main__":
    wanted = int(sys.argv[1])
    accepted = send_alone(Settings(), wanted)
    print(f"sent {accepted} of {wanted}" + (", finished" if accepted == wanted else ""))
