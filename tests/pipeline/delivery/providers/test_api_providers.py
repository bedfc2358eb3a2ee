"""The five HTTP providers against loopback fakes of their APIs: real HTTP, documented
shapes and limits enforced by the fake, faults injected; every reader exactly once."""

from __future__ import annotations

import gc
import math
import re
import threading
import tracemalloc
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.config import get_settings
from pipeline.delivery.providers import ProviderConfigError
from pipeline.delivery.send import SendPaused
from pipeline.ops.weekly import send_approved
from pipeline.store.db import session_scope
from pipeline.store.models import DeliveryStatus, Issue, IssueStatus, utcnow
from subscribers.tokens import UNSUBSCRIBE, read_token, read_vote_token
from tests.conftest import db_snapshot
from tests.fakes.provider_api import TEST_CREDENTIALS, TEST_ENV, Fault
from tests.pipeline.delivery.providers.conftest import ledger, new_issue, send

CREDS, ENV = TEST_CREDENTIALS, TEST_ENV
PROVIDERS = list(CREDS)
#: Documented messages per API call.
LIMIT = {"postmark": 500, "sendgrid": 1000, "mailgun": 1000, "resend": 100, "ses": 1}


@pytest.mark.parametrize(
    ("name", "readers"), [("postmark", 620), ("sendgrid", 1100), ("mailgun", 1100), ("resend", 230), ("ses", 40)]
)
def test_every_reader_gets_one_private_copy_in_batches_up_to_the_limit(api, workdir, name, readers):
    fake, settings = api(name, VERDICTS_PROVIDER_MAX_REQUEST_MB="64")  # the documented count limits decide here
    issue = new_issue(settings, workdir, readers)
    started = utcnow()
    summary = send(settings, issue.id)
    assert fake.violations == []
    assert summary.finished and summary.sent == readers and summary.unknown == 0
    sends = [r for r in fake.requests if r.method == "POST"]
    assert all(r.messages <= LIMIT[name] for r in sends)
    assert len(sends) == math.ceil(readers / LIMIT[name])
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(readers)})
    rows = ledger(settings)
    sent_at = {r.sent_at for r in rows.values()}
    assert len(sent_at) >= 1 and all(
        t is not None and t.tzinfo is not None and started <= t <= utcnow() for t in sent_at
    )
    for m in fake.accepted[:: max(1, readers // 25)]:
        row = rows[m.to]
        token_url = m.headers["List-Unsubscribe"].split(">")[0].lstrip("<")
        assert (
            read_token(settings.secret_key.get_secret_value(), UNSUBSCRIBE, token_url.rsplit("/", 1)[1])
            == row.subscriber_id
        )
        assert m.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert (
            token_url in m.text and token_url in m.html
        )  # the reader's own link, merged on the provider's side or ours
        assert f"Reader {m.to[6:].split('@')[0]}" in m.html and "@@" not in m.html + m.text + m.subject
        assert m.metadata["delivery"] == str(row.id)
        assert row.status is DeliveryStatus.sent and row.provider == name and row.provider_message_id and row.claimed_by
        # SendGrid answers with the request's id; its events add a suffix per message.
        given = m.provider_message_id.rsplit(".", 1)[0] if name == "sendgrid" else m.provider_message_id
        assert row.provider_message_id == given  # each row keeps the id its own message was given
        votes = set(re.findall(r"/vote/([\w.-]+)/(\d+)/(?:ship|skip)", m.html + m.text))
        assert len(votes) == 6  # one link per tool (3 comparisons × 2), each the reader's own
        assert {read_vote_token(settings.secret_key.get_secret_value(), *v).subscriber_id for v in votes} == {
            row.subscriber_id
        }


@pytest.mark.parametrize("name", PROVIDERS)
def test_throttling_and_outages_are_retried_until_every_reader_has_one_copy(api, workdir, name):
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 12)
    fake.fail_next(Fault.status(429, retry_after=0.2), Fault.status(503), Fault.status(500), Fault.slow(0.3))
    summary = send(settings, issue.id)
    assert summary.finished and summary.sent == 12 and summary.unknown == 0
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(12)})
    assert [r.status for r in fake.requests[:3]] == [429, 503, 500]


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_lost_answer_never_makes_a_second_copy(api, workdir, name):
    """The request left, the provider accepted it, the answer never came back."""
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1", VERDICTS_BATCH_SIZE="4")
    issue = new_issue(settings, workdir, 8)
    fake.fail_next(Fault.accept_then_drop())
    summary = send(settings, issue.id)
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(8)})
    first_request = 1 if name == "ses" else 4
    if name == "resend":  # retried with the same Idempotency-Key: Resend answers with the first ids
        assert summary.unknown == 0 and summary.sent == 8
        assert len({m.idempotency_key for m in fake.accepted[:4]}) == 1
    else:  # marked for reconciliation, never re-sent blindly
        assert summary.unknown == first_request and summary.sent == 8 - first_request
        assert "unknown outcome" in summary.line()


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_dropped_connection_is_retried_only_where_that_is_safe(api, workdir, name):
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1", VERDICTS_BATCH_SIZE="4")
    issue = new_issue(settings, workdir, 8)
    fake.fail_next(Fault.drop())
    summary = send(settings, issue.id)
    copies = Counter(m.to for m in fake.accepted)
    assert max(copies.values()) == 1
    if name == "resend":
        assert summary.sent == 8 and len(copies) == 8
    else:
        assert summary.unknown == len(ledger(settings)) - summary.sent > 0


@pytest.mark.parametrize("name", ["postmark", "resend", "ses"])
def test_per_message_rejections_are_recorded_and_the_rest_is_sent(api, workdir, name):
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 5)
    # SES sends one message per request: the third request is the third reader.
    fake.fail_next(*([Fault("none"), Fault("none"), Fault.reject(0)] if name == "ses" else [Fault.reject(2)]))
    summary = send(settings, issue.id)
    rows = ledger(settings)
    failed = [e for e, d in rows.items() if d.status is DeliveryStatus.failed]
    assert summary.failed == 1 and summary.sent == 4 and len(failed) == 1 and rows[failed[0]].error
    assert failed[0] not in {m.to for m in fake.accepted}


@pytest.mark.parametrize("name", ["sendgrid", "mailgun"])
def test_an_all_or_nothing_refusal_is_halved_until_the_bad_address_is_alone(api, workdir, name):
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 4)
    # The fake refuses whichever request contains position 3 of the first chunk: [0-3], [2,3], [3].
    fake.fail_next(Fault.reject(3), Fault.reject(9), Fault.reject(1), Fault.reject(9), Fault.reject(0))
    summary = send(settings, issue.id)
    rows = ledger(settings)
    assert summary.sent == 3 and summary.failed == 1
    assert rows["reader3@example.com"].status is DeliveryStatus.failed and "400" in rows["reader3@example.com"].error
    assert sorted(m.to for m in fake.accepted) == [f"reader{i}@example.com" for i in range(3)]


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_missing_credential_is_a_clear_error_before_anything_is_sent(api, workdir, name, verdicts, monkeypatch):
    fake, settings = api(name)
    issue = new_issue(settings, workdir, 3)
    variable = next(k for k in ENV[name] if k.startswith("VERDICTS_") and k != "VERDICTS_MAILGUN_DOMAIN")
    monkeypatch.delenv(variable)
    before = db_snapshot(settings.database_url)
    result = verdicts("issue", "send", str(issue.id))
    assert result.code == 3 and variable in result.err
    assert db_snapshot(settings.database_url) == before and fake.requests == []


@pytest.mark.parametrize("name", PROVIDERS)
def test_providers_check_makes_one_harmless_call(api, name, verdicts, monkeypatch):
    fake, _ = api(name)
    result = verdicts("providers", "check")
    assert result.code == 0, result.err
    assert f"{name}: ok" in result.out
    assert [r.method for r in fake.requests] == ["GET"] and fake.accepted == []
    wrong = {"ses": ("AWS_SECRET_ACCESS_KEY", "wrong")}.get(name) or (next(iter(ENV[name])), "wrong-key")
    monkeypatch.setenv(*wrong)
    result = verdicts("providers", "check")
    assert result.code == 3 and "refused" in result.err


def test_refused_credentials_stop_the_send_and_leave_the_rest_queued(api, workdir, monkeypatch):
    fake, settings = api("postmark", VERDICTS_POSTMARK_SERVER_TOKEN="revoked")
    issue = new_issue(settings, workdir, 6)
    with pytest.raises(ProviderConfigError, match="VERDICTS_POSTMARK_SERVER_TOKEN"):
        send(settings, issue.id)
    assert {d.status for d in ledger(settings).values()} == {DeliveryStatus.pending}
    monkeypatch.setenv("VERDICTS_POSTMARK_SERVER_TOKEN", "pm-test")
    get_settings.cache_clear()
    assert send(get_settings(), issue.id).sent == 6


def test_failover_hands_the_rest_of_the_send_to_the_fallback_without_a_second_copy(api, workdir):
    backup, _ = api("resend")
    primary, settings = api(
        "postmark",
        VERDICTS_FALLBACK_PROVIDER="resend",
        VERDICTS_FALLBACK_BASE_URL=backup.base_url,
        VERDICTS_RESEND_API_KEY="re_test",
        VERDICTS_BATCH_SIZE="5",
        VERDICTS_FAILOVER_AFTER_SECONDS="0",
        VERDICTS_PROVIDER_RETRY_ATTEMPTS="2",
        VERDICTS_PROVIDER_CONCURRENCY="1",
    )
    issue = new_issue(settings, workdir, 20)
    primary.fail_next(Fault("none"), *[Fault.status(503)] * 50)
    summary = send(settings, issue.id, with_fallback=True)
    got = Counter(m.to for m in primary.accepted) + Counter(m.to for m in backup.accepted)
    assert got == Counter({f"reader{i}@example.com": 1 for i in range(20)})
    assert summary.finished and summary.carried == {"postmark": 5, "resend": 15}
    assert "carried by postmark 5, resend 15" in summary.line()
    assert Counter(d.provider for d in ledger(settings).values()) == {"postmark": 5, "resend": 15}


def test_without_a_fallback_a_long_outage_pauses_the_send_and_issue_send_resumes_it(api, workdir, verdicts):
    fake, settings = api(
        "sendgrid", VERDICTS_FAILOVER_AFTER_SECONDS="0", VERDICTS_PROVIDER_RETRY_ATTEMPTS="2", VERDICTS_BATCH_SIZE="4"
    )
    issue = new_issue(settings, workdir, 10)
    fake.fail_next(Fault("none"), Fault.status(503), Fault.status(503))  # the second request, both attempts

    with pytest.raises(
        SendPaused, match="issue 1 is paused with 6 messages waiting; `verdicts issue send 1` resumes it"
    ):
        send(settings, issue.id)
    assert Counter(d.status for d in ledger(settings).values()) == {DeliveryStatus.sent: 4, DeliveryStatus.pending: 6}
    shown = verdicts("issue", "show", str(issue.id)).out
    assert (
        "— paused" in shown
        and "sendgrid is unavailable (sendgrid: HTTP 503" in shown
        and "`verdicts issue send 1` resumes it" in shown
    )
    assert send_approved(settings) == []  # the scheduler leaves a paused send to the operator

    resumed = verdicts("issue", "send", str(issue.id))
    assert resumed.code == 0 and "sent 6" in resumed.out
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(10)})
    with session_scope(settings.database_url) as session:
        done = session.get(Issue, issue.id)
        assert done.status is IssueStatus.sent and done.paused_reason is None


def test_a_request_that_may_have_gone_out_never_moves_to_the_fallback(api, workdir):
    """Resend timed out (it had accepted), then kept failing: the rows are unknown, not handed over."""
    backup, _ = api("postmark")
    primary, settings = api(
        "resend",
        VERDICTS_FALLBACK_PROVIDER="postmark",
        VERDICTS_FALLBACK_BASE_URL=backup.base_url,
        VERDICTS_POSTMARK_SERVER_TOKEN="pm-test",
        VERDICTS_BATCH_SIZE="4",
        VERDICTS_FAILOVER_AFTER_SECONDS="0",
        VERDICTS_PROVIDER_RETRY_ATTEMPTS="2",
        VERDICTS_PROVIDER_CONCURRENCY="1",
    )
    issue = new_issue(settings, workdir, 8)
    primary.fail_next(Fault.accept_then_drop(), Fault.status(503))
    summary = send(settings, issue.id, with_fallback=True)
    got = Counter(m.to for m in primary.accepted) + Counter(m.to for m in backup.accepted)
    assert got == Counter({f"reader{i}@example.com": 1 for i in range(8)})
    assert summary.unknown == 4 and summary.carried == {"postmark": 4}
    assert "carried by postmark 4" in summary.line()


def test_a_primary_that_stops_answering_hands_over_to_the_fallback(api, workdir):
    backup, _ = api("resend")
    primary, settings = api(
        "postmark",
        VERDICTS_FALLBACK_PROVIDER="resend",
        VERDICTS_FALLBACK_BASE_URL=backup.base_url,
        VERDICTS_RESEND_API_KEY="re_test",
        VERDICTS_BATCH_SIZE="5",
        VERDICTS_FAILOVER_AFTER_SECONDS="0",
        VERDICTS_PROVIDER_TIMEOUT_SECONDS="0.3",
        VERDICTS_PROVIDER_CONCURRENCY="1",
    )
    issue = new_issue(settings, workdir, 15)
    primary.fail_next(Fault.slow(1.0))
    summary = send(settings, issue.id, with_fallback=True)
    got = Counter(m.to for m in primary.accepted) + Counter(m.to for m in backup.accepted)
    assert got == Counter(
        {f"reader{i}@example.com": 1 for i in range(15)}
    )  # the slow batch was accepted once, never re-sent
    assert summary.unknown == 5 and summary.carried == {"resend": 10}


@pytest.mark.parametrize(
    ("name", "fault"), [("postmark", Fault.status(422)), ("ses", Fault.status(400)), ("resend", Fault.status(422))]
)
def test_a_whole_request_refusal_by_a_per_message_provider_stops_the_send_instead_of_failing_readers(
    api, workdir, name, fault
):
    """Postmark 422 (account may not send), SES 400 (e.g. sending paused): about us, not the readers."""
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 6)
    fake.fail_next(fault)
    with pytest.raises(ProviderConfigError, match="refused the request"):
        send(settings, issue.id)
    assert {d.status for d in ledger(settings).values()} == {DeliveryStatus.pending}
    assert send(settings, issue.id).sent == 6 and len(fake.accepted) == 6


def test_unreadable_retry_after_falls_back_to_our_own_backoff():
    from pipeline.delivery.providers.answers import header_seconds

    assert header_seconds("soon") is None and header_seconds("2") == 2.0 and header_seconds(None) is None
    assert header_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now


def test_sendgrid_sends_a_reader_alone_when_their_values_exceed_its_substitution_limits(api, workdir, monkeypatch):
    from pipeline.delivery.messages import build_message
    from pipeline.delivery.providers import sendgrid
    from pipeline.email.render import Recipient, render_issue
    from subscribers.lookup import get_by_email

    fake, settings = api("sendgrid", VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 5)
    with session_scope(settings.database_url) as session:
        reader = get_by_email(session, "reader2@example.com")
        reader.name = "N" * 200  # the longest name a reader can have
        session.add(reader)
        rendered = render_issue(session, issue, settings)

    def size(name: str) -> int:
        message = build_message(rendered, Recipient(3, "x@example.com", name), settings, delivery_id=1, campaign="c")
        return sum(len(k) + len(v) for k, v in sendgrid._substitutions(message).items())

    # Many tools or a long BASE_URL can push a reader over SendGrid's 10,000 bytes; here a long name does, at a
    # lower limit.
    monkeypatch.setattr(sendgrid, "MAX_SUBSTITUTION_BYTES", (size("Reader 1") + size("N" * 200)) // 2)
    summary = send(settings, issue.id)
    assert fake.violations == [] and summary.sent == 5
    assert [r.messages for r in fake.requests if r.method == "POST"] == [2, 1, 2]  # in order, the long one alone
    alone = next(m for m in fake.accepted if m.to == "reader2@example.com")
    assert "N" * 200 in alone.html and "@@" not in alone.html


def test_request_bodies_are_capped_by_bytes_so_memory_stays_flat(api, workdir):
    fake, settings = api("postmark", VERDICTS_PROVIDER_MAX_REQUEST_MB="1", VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 60)
    assert send(settings, issue.id).sent == 60 and fake.violations == []
    posts = [r for r in fake.requests if r.method == "POST"]
    assert sum(r.messages for r in posts) == 60 and len(posts) >= 3
    assert max(r.size for r in posts) <= 1024 * 1024  # JSON escaping included


def test_a_request_body_is_let_go_once_written_not_left_to_the_cyclic_collector(api, workdir):
    """httpx's request and response refer to each other: a body they held would stay in memory
    (megabytes per request) until the collector ran, and a big send's peak RSS grew with it."""
    fake, settings = api("postmark", VERDICTS_PROVIDER_MAX_REQUEST_MB="1", VERDICTS_PROVIDER_CONCURRENCY="1")
    issue = new_issue(settings, workdir, 60)
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        assert send(settings, issue.id).sent == 60
        held = tracemalloc.get_traced_memory()[0]
        gc.collect()
        freed_by_the_collector = held - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) >= 3 and sum(r.size for r in posts) > 2_000_000
    assert freed_by_the_collector < 256 * 1024


@pytest.mark.parametrize("name", PROVIDERS)
def test_an_unreadable_success_answer_is_an_unknown_outcome_not_a_crash(api, workdir, name):
    fake, settings = api(name, VERDICTS_PROVIDER_CONCURRENCY="1", VERDICTS_BATCH_SIZE="4")
    issue = new_issue(settings, workdir, 8)
    fake.fail_next(Fault.garbage())
    summary = send(settings, issue.id)
    # SendGrid's success is the status alone (its body is empty), so nothing there is unreadable.
    first = {"ses": 1, "sendgrid": 0}.get(name, 4)
    assert summary.finished and summary.unknown == first and summary.sent == 8 - first
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(8)})
    assert any("not its API's" in (d.error or "") for d in ledger(settings).values()) == bool(first)


def test_a_base_url_that_answers_with_a_web_page_is_named_not_pasted(workdir, verdicts, monkeypatch):
    """A wrong VERDICTS_PROVIDER_BASE_URL (a web site, a proxy) answers 404 with an HTML page: the error says
    where to look instead of printing the page's markup over several lines."""

    class WebSite(BaseHTTPRequestHandler):
        status = 404

        def do_GET(self):
            page = b"<!doctype html>\n<html><head><title>Error</title></head>\n<body><h1>Error</h1></body></html>\n"
            self.send_response(self.status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), WebSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name, value in {
            "PROVIDER": "postmark",
            "POSTMARK_SERVER_TOKEN": "pm",
            "PROVIDER_RETRY_ATTEMPTS": "1",
            "PROVIDER_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
        }.items():
            monkeypatch.setenv(f"VERDICTS_{name}", value)
        result = verdicts("providers", "check")
        WebSite.status = 503  # the API's own load balancer, in an outage: the base URL is not to blame
        outage = verdicts("providers", "check")
    finally:
        server.shutdown()
        server.server_close()
    assert (
        result.code == 3
        and "HTTP 404: an HTML page, not the API's answer: check the base URL (VERDICTS_PROVIDER_BASE_URL" in result.err
    )
    assert "<html" not in result.err and result.err.count("\n") == 1
    assert (
        outage.code == 5
        and "HTTP 503: an HTML page, not the API's answer" in outage.err
        and "base URL" not in outage.err
    )
