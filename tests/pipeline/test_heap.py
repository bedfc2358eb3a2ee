"""A send's memory settings last exactly as long as the send: a scheduler that sends every week
must not pile each send's objects into the collector's permanent generation."""

from __future__ import annotations

import gc
import platform

import pytest

from pipeline.heap import keep_freed_heap
from pipeline.providers import OutboxProvider, ProviderUnavailable
from pipeline.send import SendPaused, send_issue
from tests.conftest import seed_issue


def test_the_collector_is_frozen_during_a_send_and_thawed_after(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=3)
    seen = []
    summary = send_issue(settings.model_copy(update={"batch_size": 1}), issue.id, OutboxProvider(settings),
                         on_progress=lambda done, total: seen.append(gc.get_freeze_count()))
    assert summary.sent == 3
    assert seen and min(seen) > 0
    assert gc.get_freeze_count() == 0


def test_a_paused_send_thaws_the_collector_too(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=2)

    class Down(OutboxProvider):
        def send_batch(self, messages, *, campaign):
            raise ProviderUnavailable("the provider is down")

    with pytest.raises(SendPaused):
        send_issue(settings.model_copy(update={"failover_after_seconds": 0}), issue.id, Down(settings))
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_heap_pad():
    assert keep_freed_heap() is True
