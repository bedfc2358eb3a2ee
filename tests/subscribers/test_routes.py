"""The public pages through FastAPI's test client: double opt-in, one-click unsubscribe, preferences."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import itsdangerous.timed
from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.email.render import reader_url
from subscribers.addresses import email_hash
from subscribers.lookup import get_by_email
from subscribers.models import ConsentRecord, Subscriber, SubscriberStatus, Suppression
from subscribers.service import add_subscriber, suppress, unsubscribe
from subscribers.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, make_timed_token, make_token
from tests.conftest import db_snapshot, link_in, outbox_messages, seed_issue

UA = {"User-Agent": "pytest-browser/1.0"}


def _path(url: str) -> str:
    return urlsplit(url).path


def _sign_up(client, email="new@example.com", name="Nia"):
    """The sign-up form as a browser sends it, and the page its redirect leads to (or its error page)."""
    return _then(client, client.post("/subscribe", data={"email": email, "name": name, "website": ""}, headers=UA))


def _then(client, response):
    """A form's answer as a browser shows it: a 303 (POST/redirect/GET) followed by a GET, anything else as is."""
    if response.status_code != 303:
        return response
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    return page


def _confirm(client, link):
    """The emailed link as a reader uses it: open its page, press its one button, land where the 303 leads."""
    path = _path(link)
    shown = client.get(path)
    if shown.status_code != 200 or "Confirm my subscription" not in shown.text:
        return shown
    assert '<form method="post" action="' + path + '"' in shown.text
    pressed = client.post(path, headers=UA)
    assert pressed.status_code == 303 and pressed.headers["location"] == path, pressed.text
    return _then(client, pressed)


def test_signup_page_works_without_javascript_and_sends_safe_headers(client):
    r = client.get("/subscribe")
    assert r.status_code == 200 and '<form method="post" action="/subscribe"' in r.text and 'name="website"' in r.text
    assert (
        "script-src" not in r.headers["content-security-policy"]
        and "default-src 'none'" in r.headers["content-security-policy"]
    )
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in r.text


def test_double_opt_in_with_consent_records(client, session, settings):
    r = _sign_up(client)
    assert r.status_code == 200 and "Check your inbox" in r.text
    sub = get_by_email(session, "new@example.com")
    assert sub.status is SubscriberStatus.pending
    [mail] = outbox_messages(settings)
    assert mail["To"].addresses[0].addr_spec == "new@example.com" and "List-Unsubscribe" not in mail
    confirm = _path(link_in(mail, "/confirm/"))
    # Opening the link (a person, or a mail scanner) asks, with one button; nothing changes until it is pressed.
    before = db_snapshot(settings.database_url)
    shown = client.get(confirm, headers=UA)
    assert shown.status_code == 200 and "<script" not in shown.text and "n***@example.com" in shown.text
    assert shown.text.count("<button") == 1 and f'<form method="post" action="{confirm}">' in shown.text
    assert "You’re in" not in shown.text and settings.consent_text in shown.text
    assert db_snapshot(settings.database_url) == before
    pressed = client.post(confirm, headers=UA)
    assert pressed.status_code == 303 and pressed.headers["location"] == confirm
    page = client.get(confirm)
    assert page.status_code == 200 and "You’re in" in page.text and "<button" not in page.text
    session.refresh(sub)
    assert sub.status is SubscriberStatus.confirmed and sub.confirmed_at is not None
    trail = session.exec(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id)).all()
    assert [(c.event.value, c.source) for c in trail] == [("signup", "form"), ("confirm", "email")]
    assert (
        trail[0].wording_version == settings.consent_wording_version
        and trail[0].user_agent == "pytest-browser/1.0"
        and trail[0].ip
    )
    assert trail[1].user_agent == "pytest-browser/1.0" and trail[1].ip  # the press's, as the link's open was
    assert trail[1].wording_version == settings.consent_wording_version
    # Reused link, a double click or an old tab: friendly, changes nothing; signing up again sends nothing.
    confirmed = db_snapshot(settings.database_url)
    again = client.post(confirm, headers=UA)
    assert again.status_code == 303 and again.headers["location"] == confirm
    assert "You’re in" in client.get(confirm).text
    assert db_snapshot(settings.database_url) == confirmed
    assert "Check your inbox" in _sign_up(client).text
    assert len(outbox_messages(settings)) == 1


def test_bad_address_gets_the_form_back(client, session):
    r = _sign_up(client, email="not-an-address")
    assert (
        r.status_code == 422 and "does not look like an email address" in r.text and 'value="not-an-address"' in r.text
    )
    assert session.exec(select(Subscriber)).all() == []


def test_a_name_too_long_is_named_as_the_problem(client, session):
    r = _sign_up(client, email="long@example.com", name="N" * 201)
    assert r.status_code == 422 and "Please check your name: name is longer than 200 characters" in r.text
    assert "email address" not in r.text and 'value="long@example.com"' in r.text
    assert session.exec(select(Subscriber)).all() == []


def test_an_old_confirmation_link_does_not_undo_an_unsubscribe(client, session, settings):
    _sign_up(client)
    confirm = _path(link_in(outbox_messages(settings)[0], "/confirm/"))
    assert "You’re in" in _confirm(client, confirm).text
    sub = get_by_email(session, "new@example.com")
    assert (
        client.post(
            _path(reader_url(settings, UNSUBSCRIBE, sub.id)), data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 200
    )
    # A mail scanner (or the reader) opens the old confirmation email again, and presses what it finds.
    left = db_snapshot(settings.database_url)
    for again in (client.get(confirm), client.post(confirm)):
        assert (
            again.status_code == 409
            and "unsubscribed after this link was sent" in again.text
            and "n***@example.com unsubscribed" in again.text
            and "<button" not in again.text
        )
    assert db_snapshot(settings.database_url) == left
    session.expire_all()
    assert get_by_email(session, "new@example.com").status is SubscriberStatus.unsubscribed
    assert session.get(Suppression, email_hash("new@example.com")) is not None
    # Coming back through a new sign-up works, with the new link.
    _sign_up(client)
    assert "You’re in" in _confirm(client, link_in(outbox_messages(settings)[-1], "/confirm/")).text
    session.expire_all()
    assert get_by_email(session, "new@example.com").status is SubscriberStatus.confirmed


def test_honeypot_answers_the_same_and_does_nothing(client, session, settings):
    r = client.post("/subscribe", data={"email": "bot@example.com", "website": "http://spam"})
    assert r.status_code == 303 and r.headers["location"] == "/subscribe/check-inbox"  # as a real sign-up's
    landed = _then(client, r).text
    assert (
        "Check your inbox" in landed and f"a file in {settings.outbox_dir / 'confirmations'}/" in landed
    )  # the demo's
    assert session.exec(select(Subscriber)).all() == [] and outbox_messages(settings) == []


def test_rate_limits_per_address_and_per_ip(client, settings):
    for _ in range(5):
        assert "Check your inbox" in _sign_up(client, "victim@example.com").text
    assert len(outbox_messages(settings)) == settings.signup_limit_per_address
    codes = [_sign_up(client, f"r{i}@example.com").status_code for i in range(settings.signup_limit_per_ip)]
    assert codes[-1] == 429


def test_sign_ups_that_email_nobody_do_not_use_up_the_address_limit(client, session, settings):
    """A confirmed reader presses the button a few times (nothing is sent), leaves, and comes back."""
    _sign_up(client, "back@example.com")
    assert "You’re in" in _confirm(client, link_in(outbox_messages(settings)[-1], "/confirm/")).text
    for _ in range(settings.signup_limit_per_address):
        _sign_up(client, "back@example.com")
    assert len(outbox_messages(settings)) == 1
    unsubscribe(session, get_by_email(session, "back@example.com"), trigger="page")
    session.commit()
    _sign_up(client, "back@example.com")
    assert len(outbox_messages(settings)) == 2
    assert "You’re in" in _confirm(client, link_in(outbox_messages(settings)[-1], "/confirm/")).text


def test_forged_tampered_expired_and_cross_purpose_tokens(client, session, settings, monkeypatch):
    add_subscriber(session, "p@example.com", "P")
    session.commit()
    sub = get_by_email(session, "p@example.com")
    secret = settings.secret_key.get_secret_value()
    good = make_timed_token(secret, CONFIRM, sub.id)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    forged = make_timed_token("someone-elses-secret", CONFIRM, sub.id)
    wrong_purpose = make_token(secret, UNSUBSCRIBE, sub.id)
    real_time = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real_time() - 3 * 86400)
    expired = make_timed_token(secret, CONFIRM, sub.id)
    monkeypatch.undo()
    before = db_snapshot(settings.database_url)
    for token, why in [(t, "not valid") for t in (tampered, forged, wrong_purpose, "garbage")] + [(expired, "expired")]:
        for r in (client.get(f"/confirm/{token}"), client.post(f"/confirm/{token}")):
            # The error page as before: what went wrong and the way back, no button that could confirm.
            assert r.status_code == 400 and why in r.text and "<button" not in r.text, (token, r.request.method)
            assert 'href="/subscribe"' in r.text
    assert db_snapshot(settings.database_url) == before
    for path in (f"/unsubscribe/{tampered}", f"/preferences/{wrong_purpose}"):
        r = client.get(path)
        # Someone leaving is shown the ways out that work, not the sign-up page.
        # No unsubscribe mailbox is configured, so none is offered: only the links that work.
        assert r.status_code == 400 and "unsubscribe link in your latest email" in r.text and "mailto:" not in r.text
        assert 'href="/subscribe"' not in r.text
    assert client.post(f"/unsubscribe/{tampered}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    session.refresh(sub)
    assert sub.status is SubscriberStatus.pending


def test_one_click_unsubscribe_rfc8058(client, session, settings):
    add_subscriber(session, "a@example.com", "A", confirmed=True)
    add_subscriber(session, "b@example.com", "B", confirmed=True)
    session.commit()
    a, b = get_by_email(session, "a@example.com"), get_by_email(session, "b@example.com")
    url_a = _path(reader_url(settings, UNSUBSCRIBE, a.id))
    # A link scanner's GET shows a button and changes nothing.
    scan = client.get(url_a)
    assert scan.status_code == 200 and "Unsubscribe?" in scan.text and f'action="{url_a}"' in scan.text
    session.refresh(a)
    assert a.status is SubscriberStatus.confirmed
    # The mailbox provider's POST: no cookie, no CSRF token, 200 directly, idempotent.
    for _ in range(2):
        r = client.post(url_a, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200 and not r.is_redirect and "unsubscribed" in r.text
    session.refresh(a)
    assert a.status is SubscriberStatus.unsubscribed
    # multipart/form-data, as RFC 8058 prefers
    r = client.post(_path(reader_url(settings, UNSUBSCRIBE, b.id)), files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    session.refresh(b)
    assert b.status is SubscriberStatus.unsubscribed
    withdrawals = session.exec(select(ConsentRecord).where(ConsentRecord.event == "withdraw")).all()
    assert [w.trigger for w in withdrawals] == ["one-click", "one-click"]
    assert session.get(Suppression, email_hash("a@example.com")).reason == "unsubscribed"


def test_signup_to_inbox_to_one_click_out(client, session, settings, tmp_path):
    _sign_up(client, "reader@example.com", "Rae")
    _confirm(client, link_in(outbox_messages(settings)[0], "/confirm/"))
    issue = seed_issue(session, tmp_path, readers=0)
    assert send_issue(settings, issue.id, OutboxProvider(settings)).sent == 1
    [newsletter] = outbox_messages(settings, f"{issue.id}-{issue.week}")
    https = re.search(r"<(https://[^>]+)>", newsletter["List-Unsubscribe"]).group(1)
    assert client.post(_path(https), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    # Re-signing up without confirming again does not bring them back: they stay out until the button.
    _sign_up(client, "reader@example.com")
    assert get_by_email(session, "reader@example.com").status is SubscriberStatus.unsubscribed
    session.expire_all()
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from pipeline.content.importing import load_files, upsert
    from pipeline.content.issues import approve, build_issue
    from tests.conftest import NOW, comparison, write_json

    upsert(session, load_files([write_json(tmp_path / "next.json", comparison("next-week", NOW + timedelta(days=6)))]))
    nxt = build_issue(session, now=NOW + timedelta(days=7), tz=ZoneInfo("UTC"), max_comparisons=5).issue
    approve(session, nxt)
    add_subscriber(session, "other@example.com", "O", confirmed=True)
    session.commit()
    summary = send_issue(settings, nxt.id, OutboxProvider(settings))
    assert summary.sent == 1
    assert [m["To"].addresses[0].addr_spec for m in outbox_messages(settings, f"{nxt.id}-{nxt.week}")] == [
        "other@example.com"
    ]


def test_preferences_pause_rename_leave_return_export_erase(client, session, settings, tmp_path):
    add_subscriber(session, "me@example.com", "Me", confirmed=True)
    session.commit()
    me = get_by_email(session, "me@example.com")
    me_id = me.id
    base = _path(reader_url(settings, PREFERENCES, me.id))
    page = client.get(base)
    assert page.status_code == 200 and "m***@example.com" in page.text and "me@example.com" not in page.text

    r = client.post(f"{base}/pause", data={"weeks": "3"})
    assert r.status_code == 303 and "Paused until" in client.get(r.headers["location"]).text
    issue = seed_issue(session, tmp_path, readers=0)
    add_subscriber(session, "other@example.com", confirmed=True)
    session.commit()
    assert send_issue(settings, issue.id, OutboxProvider(settings)).sent == 1  # paused: only the other reader

    client.post(f"{base}/pause", data={"weeks": "0"})
    client.post(f"{base}/name", data={"name": "Meg"})
    session.refresh(me)
    assert me.paused_until is None and me.name == "Meg"
    assert client.post(f"{base}/pause", data={"weeks": "9"}).status_code == 400

    client.post(f"{base}/unsubscribe")
    session.refresh(me)
    assert me.status is SubscriberStatus.unsubscribed
    client.post(f"{base}/resubscribe")
    session.refresh(me)
    assert me.status is SubscriberStatus.confirmed and session.get(Suppression, email_hash(me.email)) is None

    data = client.get(f"{base}/data.json")
    assert "attachment" in data.headers["content-disposition"]
    mine = json.loads(data.text)
    assert mine["email"] == "me@example.com" and [c["event"] for c in mine["consent"]] == [
        "signup",
        "confirm",
        "withdraw",
        "resubscribe",
    ]

    assert client.post(f"{base}/erase", data={}).status_code == 422  # the box must be ticked
    r = client.post(f"{base}/erase", data={"confirm": "yes"})
    assert r.status_code == 303 and "Your data is erased" in _then(client, r).text
    session.expire_all()
    assert session.get(Subscriber, me_id) is None
    assert session.get(Suppression, email_hash("me@example.com")).reason == "erased"
    assert all(
        c.email is None and c.ip is None
        for c in session.exec(select(ConsentRecord)).all()
        if c.email_hash == email_hash("me@example.com")
    )
    assert client.get(base).status_code == 404
    assert add_subscriber(session, "me@example.com", "Me", confirmed=True).outcome == "suppressed"


def test_a_reader_who_left_cannot_pause_and_old_notices_do_not_contradict_the_page(client, session, settings):
    """A second tab still shows the pause form after the reader left in the first one."""
    add_subscriber(session, "me@example.com", "Me", confirmed=True)
    session.commit()
    me = get_by_email(session, "me@example.com")
    base = _path(reader_url(settings, PREFERENCES, me.id))
    client.post(f"{base}/unsubscribe")
    r = client.post(f"{base}/pause", data={"weeks": "3"})
    assert r.status_code == 409 and "Nothing to pause" in r.text and "You are unsubscribed" in r.text
    session.refresh(me)
    assert me.paused_until is None and me.status is SubscriberStatus.unsubscribed
    too_long = client.post(f"{base}/name", data={"name": "N" * 201})
    assert too_long.status_code == 422 and "longer than 200 characters. Nothing was changed." in too_long.text
    stale = client.get(f"{base}?notice=resubscribed").text
    assert "You are subscribed again" not in stale and "Unsubscribed" in stale
    assert "You are unsubscribed. You can come back" in client.get(f"{base}?notice=unsubscribed").text


def test_error_pages_and_health(client, monkeypatch):
    missing = client.get("/nope")
    assert (
        missing.status_code == 404
        and "Page not found" in missing.text
        and missing.headers["content-type"].startswith("text/html")
    )
    assert client.delete("/subscribe").status_code == 405
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "scheduler": {"status": "never seen"}}
    import subscribers.signup_routes

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(subscribers.signup_routes, "_limits", boom)
    from fastapi.testclient import TestClient

    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = _sign_up(c)
    assert (
        r.status_code == 500
        and "secret internals" not in r.text
        and "Traceback" not in r.text
        and "Something went wrong" in r.text
    )


def test_a_mail_scanner_opening_the_confirmation_link_confirms_nobody(client, session, settings):
    """Safe Links, Mimecast and the like GET (or HEAD) every link of an email, often several times."""
    _sign_up(client, "victim@example.com", "V")
    confirm = _path(link_in(outbox_messages(settings)[0], "/confirm/"))
    before = db_snapshot(settings.database_url)
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; SafeLinks-Scanner)"}
    for _ in range(3):
        assert client.head(confirm, headers=scanner).status_code in (200, 405)
        shown = client.get(confirm, headers=scanner)
        assert shown.status_code == 200 and "Confirm my subscription" in shown.text
    assert db_snapshot(settings.database_url) == before
    assert get_by_email(session, "victim@example.com").status is SubscriberStatus.pending
    assert len(outbox_messages(settings)) == 1  # nothing else was sent either


def _without_limits(snapshot: dict) -> dict:
    """A database snapshot but the rate-limit rows (a sign-up always counts its hit)."""
    return {table: rows for table, rows in snapshot.items() if table != "rate_limit"}


def test_the_confirmation_carries_no_stranger_typed_name(client, session, settings):
    """The name on the form was typed by whoever typed the address: it is stored, but neither the greeting nor
    the To: header of the email we send to that address carries it."""
    spam = "Win a prize at https://evil.example/claim now " * 4
    _sign_up(client, "target@example.com", spam[:200])
    [mail] = outbox_messages(settings)
    assert str(mail["To"]) == "target@example.com" and mail["To"].addresses[0].display_name == ""
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    for body in (html, text):
        assert "evil.example" not in body and "Win a prize" not in body and "Hello," in body
    assert "evil.example" not in mail.as_string()
    assert get_by_email(session, "target@example.com").name == spam[:200].strip()  # kept, for after confirming


def test_the_per_address_limit_counts_the_mailbox_not_its_spelling(client, settings):
    spellings = ["a+1@example.com", "A@Example.com", "a+x@example.com", "a@example.com", "a+2@EXAMPLE.com"]
    for spelling in spellings:
        assert "Check your inbox" in _sign_up(client, spelling).text
    assert len(outbox_messages(settings)) == settings.signup_limit_per_address
    _sign_up(client, "b+1@example.com")  # another mailbox is counted apart
    assert len(outbox_messages(settings)) == settings.signup_limit_per_address + 1


def test_a_stranger_signing_up_an_address_that_left_changes_nothing_until_the_button(client, session, settings):
    for address, reason in [("gone@example.com", "unsubscribed"), ("bounced@example.com", "bounce")]:
        add_subscriber(session, address, "Real Name", confirmed=True)
        session.commit()
        suppress(session, address, reason)
        session.commit()
        before = _without_limits(db_snapshot(settings.database_url))
        answer = client.post("/subscribe", data={"email": address, "name": "Stranger"}, headers=UA)
        assert answer.status_code == 303 and answer.headers["location"] == "/subscribe/check-inbox"
        assert _without_limits(db_snapshot(settings.database_url)) == before  # status, name, suppression: as they were
        link = _path(link_in(outbox_messages(settings)[-1], "/confirm/"))
        shown = client.get(link)
        assert shown.status_code == 200 and "Confirm my subscription" in shown.text
        assert _without_limits(db_snapshot(settings.database_url)) == before  # opening it (a scanner) neither
        assert "You’re in" in _confirm(client, link).text  # the reader's own press brings them back
        session.expire_all()
        row = get_by_email(session, address)
        assert row.status is SubscriberStatus.confirmed and row.name == "Real Name"
        assert session.get(Suppression, email_hash(address)) is None


def test_a_link_sent_before_a_departure_stays_dead_after_a_new_sign_up(client, session, settings):
    _sign_up(client, "twice@example.com")
    old = _path(link_in(outbox_messages(settings)[-1], "/confirm/"))
    assert "You’re in" in _confirm(client, old).text
    unsubscribe(session, get_by_email(session, "twice@example.com"), trigger="page")
    session.commit()
    _sign_up(client, "twice@example.com")
    new = _path(link_in(outbox_messages(settings)[-1], "/confirm/"))
    assert client.post(old).status_code == 409  # the old email's link still cannot undo the departure
    assert "You’re in" in _confirm(client, new).text
    # Left again: the link of the sign-up before this departure is dead too.
    unsubscribe(session, get_by_email(session, "twice@example.com"), trigger="page")
    session.commit()
    assert client.get(new).status_code == 409 and client.post(new).status_code == 409
    session.expire_all()
    assert get_by_email(session, "twice@example.com").status is SubscriberStatus.unsubscribed


def test_an_address_that_complained_is_never_emailed_by_a_sign_up(client, session, settings):
    add_subscriber(session, "angry@example.com", "A", confirmed=True)
    session.commit()
    suppress(session, "angry@example.com", "complaint")
    suppress(session, "norow@example.com", "complaint")  # a complaint about an address we never had a row for
    session.commit()
    before = _without_limits(db_snapshot(settings.database_url))
    for address in ("angry@example.com", "Angry@Example.com", "norow@example.com"):
        answer = client.post("/subscribe", data={"email": address, "name": "X"}, headers=UA)
        assert answer.status_code == 303 and answer.headers["location"] == "/subscribe/check-inbox"
    assert outbox_messages(settings) == []
    assert _without_limits(db_snapshot(settings.database_url)) == before


def test_a_failed_send_after_the_answer_is_logged_with_the_address_masked(client, settings, monkeypatch, caplog):
    import subscribers.signup_routes
    from pipeline.delivery.providers import ProviderError

    def refused(*args, **kwargs):
        raise ProviderError("the confirmation email to late@example.com was refused: 503 try later")

    monkeypatch.setattr(subscribers.signup_routes, "send_confirmation", refused)
    with caplog.at_level("WARNING", logger="subscribers.signup_routes"):
        answer = client.post("/subscribe", data={"email": "late@example.com"}, headers=UA)
    assert answer.status_code == 303 and answer.headers["location"] == "/subscribe/check-inbox"
    [line] = [r.getMessage() for r in caplog.records if r.name == "subscribers.signup_routes"]
    assert "l***@example.com" in line and "late@example.com" not in line and "ProviderError" in line
