"""The welcome email as a reader gets it: over real HTTP, sign up, press Confirm, and the welcome arrives once,
parsed back from the outbox with the stdlib, its links working."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

import httpx
from sqlmodel import select

from pipeline.store.db import session_scope
from pipeline.store.models import DeliveryStatus, Welcome
from subscribers.models import Subscriber, SubscriberStatus
from subscribers.tokens import read_referral
from tests.conftest import link_in, outbox_messages, settled, settled_outbox

WELCOME = "welcome"


def _signed_up(base: str, settings, email: str = "wen@example.com", name: str = "Wen") -> str:
    """The confirmation link the sign-up form's email carries."""
    before = len(outbox_messages(settings))
    answer = httpx.post(f"{base}/subscribe", data={"email": email, "name": name, "website": ""})
    assert answer.status_code == 303
    settled(lambda: len(outbox_messages(settings)) > before)
    return link_in(outbox_messages(settings)[-1], "/confirm/")


def _text(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def _rows(settings) -> list[Welcome]:
    with session_scope(settings.database_url) as session:
        return list(session.exec(select(Welcome)))


def test_a_reader_who_confirms_gets_one_welcome_with_the_newsletters_headers_and_working_links(live_server):
    base, settings = live_server
    confirm = _signed_up(base, settings)
    assert httpx.get(confirm).status_code == 200
    assert outbox_messages(settings, WELCOME) == []  # opening the link (a mail scanner) welcomes nobody
    assert httpx.post(confirm).status_code == 303
    [mail] = settled_outbox(settings, WELCOME)

    assert mail["To"] == "Wen <wen@example.com>"
    assert mail["From"] == f"{settings.from_name} <{settings.from_email}>"
    assert mail["Subject"] == f"Welcome to {settings.from_name}"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert settings.list_id in mail["List-Id"]
    unsubscribe = re.fullmatch(r"<(\S+)>", mail["List-Unsubscribe"]).group(1)
    text = _text(mail)
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "Hi Wen," in text and "Hi Wen," in html
    assert "every Monday at 09:00 UTC" in text  # the default VERDICTS_SCHEDULE, in words
    assert "Ship it" in text and "one vote per tool" in text and "change it" in text
    assert f"{base}/issues" in text and f'href="{base}/issues"' in html
    assert f"Unsubscribe: {unsubscribe}" in text and f'href="{unsubscribe}"' in html

    preferences = link_in(mail, "/preferences/")
    assert httpx.get(preferences).status_code == 200
    # No issue was sent yet: "Forward this verdict" invites to the sign-up page, with the reader's referral code
    # (never a private link), in both parts.
    forward = re.search(rf"{re.escape(base)}/subscribe\?ref=(\S+)", text)
    assert forward and f'href="{forward.group(0)}"' in html.replace("&amp;", "&")
    with session_scope(settings.database_url) as session:
        wen = session.exec(select(Subscriber).where(Subscriber.email == "wen@example.com")).one()
    assert read_referral(settings.secret_key.get_secret_value(), forward.group(1)) == wen.id
    assert forward.group(1) not in preferences and forward.group(1) not in unsubscribe
    assert httpx.get(forward.group(0)).status_code == 200
    assert httpx.get(f"{base}/issues").status_code == 200
    assert httpx.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200  # RFC 8058
    with session_scope(settings.database_url) as session:
        reader = session.exec(select(Subscriber).where(Subscriber.email == "wen@example.com")).one()
        assert reader.status is SubscriberStatus.unsubscribed
    [row] = _rows(settings)
    assert row.status is DeliveryStatus.sent and row.provider_message_id and row.attempts == 1


def test_a_double_press_and_a_return_after_leaving_welcome_once(live_server):
    base, settings = live_server
    confirm = _signed_up(base, settings)
    assert httpx.post(confirm).status_code == 303
    assert httpx.post(confirm).status_code == 303  # a double click, an old tab
    assert len(settled_outbox(settings, WELCOME)) == 1
    unsubscribe = re.fullmatch(r"<(\S+)>", outbox_messages(settings, WELCOME)[0]["List-Unsubscribe"]).group(1)
    httpx.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    again = _signed_up(base, settings)  # they come back through the form, and confirm again
    assert urlsplit(again).path != urlsplit(confirm).path
    assert httpx.post(again).status_code == 303
    assert "is confirmed" in httpx.get(again).text
    assert len(settled_outbox(settings, WELCOME)) == 1
    assert [r.status for r in _rows(settings)] == [DeliveryStatus.sent]


def test_two_concurrent_confirmations_send_one_welcome(live_server):
    base, settings = live_server
    confirm = _signed_up(base, settings)
    start = threading.Barrier(4)
    answers: list[int] = []

    def press() -> None:
        start.wait()
        answers.append(httpx.post(confirm, timeout=30).status_code)

    threads = [threading.Thread(target=press) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [303] * 4
    [mail] = settled_outbox(settings, WELCOME)
    assert mail["To"] == "Wen <wen@example.com>"
    [row] = _rows(settings)
    assert row.status is DeliveryStatus.sent and row.attempts == 1
