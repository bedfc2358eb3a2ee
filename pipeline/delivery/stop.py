"""Stopping a send gracefully: the flag every campaign loop checks between batches, and the signal
handlers that set it. Its own module so the scheduler, the weekly job and the parallel senders can
stop a send without importing the loop that runs it.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

#: Set by SIGTERM (see `graceful_stop`): the batch in flight is finished and recorded, no new one starts.
STOP = threading.Event()


def graceful_stop() -> None:
    """SIGTERM, or a first Ctrl-C, ends the send after the batch in flight; the next run continues
    from the ledger. A second Ctrl-C stops at once: the batch with the provider is then unknown."""

    def _stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and STOP.is_set():
            raise KeyboardInterrupt
        log.warning(
            "received %s: stopping, after finishing the batch in flight if there is one%s",
            signal.Signals(signum).name,
            " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "",
        )
        STOP.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
