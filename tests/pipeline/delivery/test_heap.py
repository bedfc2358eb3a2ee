"""A send's memory settings: the collector's freeze lasts exactly as long as the send (a scheduler
that sends every week must not pile each send's objects into the permanent generation), and a
request body built again reuses the pages of the one before."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys

import pytest

from pipeline.delivery.providers import OutboxProvider, ProviderUnavailable
from pipeline.delivery.send import SendPaused, send_issue
from tests.conftest import seed_issue


def test_the_collector_is_frozen_during_a_send_and_thawed_after(session, settings, tmp_path):
    issue = seed_issue(session, tmp_path, readers=3)
    seen = []
    summary = send_issue(
        settings.model_copy(update={"batch_size": 1}),
        issue.id,
        OutboxProvider(settings),
        on_progress=lambda done, total: seen.append(gc.get_freeze_count()),
    )
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


_BODIES = """
import resource

def build(fill):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    body = fill * (4 << 20)  # writes every page
    del body
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(*(build(fill) for fill in (b"a", b"b", b"c", b"d")))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the sliding mmap threshold is glibc's")
def test_a_request_body_built_again_reuses_the_freed_pages():
    """A per-message provider builds and frees a 4 MB body again and again: each one faulted in afresh
    (about 1,000 page faults, every page zeroed by the kernel) was a quarter of a send's system time.
    glibc's own sliding ``mmap`` threshold serves every body after the second from the freed heap, with
    the allocator left as it is (pipeline/heap.py). A fresh interpreter: nothing allocated before tunes it."""
    out = subprocess.run([sys.executable, "-c", _BODIES], capture_output=True, text=True, check=True).stdout
    faults = [int(n) for n in out.split()]
    assert faults[0] > 512  # the first body is faulted in: page faults are seen at all
    assert max(faults[2:]) < 64
