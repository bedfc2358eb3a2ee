"""Self-test of the fake provider APIs, driven with raw httpx requests."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from tests.fakes.provider_api import TEST_CREDENTIALS, AcceptedMessage, FakeProviderAPI, Fault

CREDS = TEST_CREDENTIALS
UNSUB = {"List-Unsubscribe": "<https://example.com/u/tok>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
AUTH_STATUS = {"postmark": 401, "sendgrid": 401, "mailgun": 401, "resend": 403, "ses": 403}
CHECK = {
    "postmark": "/server",
    "sendgrid": "/v3/scopes",
    "mailgun": "/v3/domains/mg.example.com",
    "resend": "/domains",
    "ses": "/v2/email/account",
}


def addr(i: int) -> str:
    return f"reader{i}@example.org"


def postmark_msg(i: int, **over) -> dict:
    return {
        "From": "news@example.com",
        "To": addr(i),
        "Subject": f"Issue {i}",
        "HtmlBody": f"<p>{i}</p>",
        "TextBody": f"text {i}",
        "MessageStream": "broadcast",
        "Metadata": {"send_id": f"s{i}"},
        "Headers": [{"Name": k, "Value": v} for k, v in UNSUB.items()],
        **over,
    }


def resend_msg(i: int, **over) -> dict:
    return {
        "from": "news@example.com",
        "to": [addr(i)],
        "subject": f"Issue {i}",
        "html": f"<p>{i}</p>",
        "text": f"text {i}",
        "headers": UNSUB,
        "tags": [{"name": "send_id", "value": f"s{i}"}],
        **over,
    }


def sendgrid_body(n: int) -> dict:
    return {
        "from": {"email": "news@example.com"},
        "subject": "Issue for -name-",
        "content": [{"type": "text/plain", "value": "Hi -name-"}, {"type": "text/html", "value": "<p>Hi -name-</p>"}],
        "headers": {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "custom_args": {"campaign": "c1"},
        "personalizations": [
            {
                "to": [{"email": addr(i)}],
                "substitutions": {"-name-": f"R{i}"},
                "headers": {"List-Unsubscribe": f"<https://example.com/u/{i}>"},
                "custom_args": {"send_id": f"s{i}"},
            }
            for i in range(n)
        ],
    }


def ses_body(**over) -> dict:
    return {
        "FromEmailAddress": "news@example.com",
        "Destination": {"ToAddresses": [addr(0)]},
        "Content": {
            "Simple": {
                "Subject": {"Data": "Issue 0"},
                "Body": {"Text": {"Data": "text 0"}, "Html": {"Data": "<p>0</p>"}},
                "Headers": [{"Name": k, "Value": v} for k, v in UNSUB.items()],
            }
        },
        "EmailTags": [{"Name": "send_id", "Value": "s0"}],
        **over,
    }


def sign_ses(method: str, url: str, body: bytes, secret: str = "secret") -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("AKIDTEST", secret), "ses", "eu-west-1").add_auth(req)
    return dict(req.headers.items())


def send(client: httpx.Client, fake: FakeProviderAPI, provider: str, n: int = 2, **opts) -> httpx.Response:
    """A valid send request of n messages (SES: always 1)."""
    url = fake.base_url
    if provider == "postmark":
        return client.post(
            f"{url}/email/batch",
            json=[postmark_msg(i) for i in range(n)],
            headers={"X-Postmark-Server-Token": "pm-test"},
        )
    if provider == "sendgrid":
        return client.post(f"{url}/v3/mail/send", json=sendgrid_body(n), headers={"Authorization": "Bearer SG.test"})
    if provider == "mailgun":
        data = {
            "from": "news@example.com",
            "subject": "Issue for %recipient.name%",
            "text": "Hi %recipient.name%",
            "html": "<p>%recipient.name%</p>",
            "h:List-Unsubscribe": "<%recipient.unsub%>",
            "h:List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "v:send_id": "%recipient.send_id%",
            "v:campaign": "c1",
            "o:tag": ["issue"],
            "to": [addr(i) for i in range(n)],
            "recipient-variables": json.dumps(
                {
                    addr(i): {"name": f"R{i}", "unsub": f"https://example.com/u/{i}", "send_id": f"s{i}"}
                    for i in range(n)
                }
            ),
        }
        return client.post(
            f"{url}/v3/mg.example.com/messages", data=data, files=opts.get("files"), auth=("api", "key-test")
        )
    if provider == "resend":
        return client.post(
            f"{url}/emails/batch",
            json=[resend_msg(i) for i in range(n)],
            headers={"Authorization": "Bearer re_test", **opts.get("headers", {})},
        )
    body = json.dumps(ses_body()).encode()
    return client.post(
        f"{url}/v2/email/outbound-emails",
        content=body,
        headers=sign_ses("POST", f"{url}/v2/email/outbound-emails", body),
    )


@pytest.fixture
def client():
    with httpx.Client(timeout=5) as c:
        yield c


@pytest.mark.parametrize("provider", list(CREDS))
def test_valid_send_is_accepted_and_bad_auth_refused(provider, client):
    with FakeProviderAPI(provider, credentials=CREDS[provider]) as fake:
        n = 1 if provider == "ses" else 2
        resp = send(client, fake, provider, n)
        assert resp.status_code == (202 if provider == "sendgrid" else 200), resp.text
        assert fake.violations == []
        assert [m.to for m in fake.accepted] == [addr(i) for i in range(n)]
        first = fake.accepted[0]
        assert isinstance(first, AcceptedMessage) and first.provider_message_id
        assert first.headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
        assert first.headers["LIST-UNSUBSCRIBE"].startswith("<https://example.com/u/")
        assert first.metadata["send_id"] == "s0"
        assert fake.requests[-1].messages == n and fake.requests[-1].status == resp.status_code

        assert (
            client.get(
                fake.base_url + CHECK[provider],
                headers=sign_ses("GET", fake.base_url + CHECK[provider], b"")
                if provider == "ses"
                else {
                    "X-Postmark-Server-Token": "pm-test",
                    "Authorization": {
                        "sendgrid": "Bearer SG.test",
                        "resend": "Bearer re_test",
                        "mailgun": "Basic " + base64.b64encode(b"api:key-test").decode(),
                    }.get(provider, ""),
                },
            ).status_code
            == 200
        )
        assert (
            client.get(fake.base_url + CHECK[provider], headers={"Authorization": "Bearer nope"}).status_code
            == AUTH_STATUS[provider]
        )
        bad = FakeProviderAPI(
            provider, credentials={**CREDS[provider], "token": "x", "api_key": "x", "secret_key": "x"}
        )
        with bad:
            resp = send(client, bad, provider, n)
        assert resp.status_code == AUTH_STATUS[provider] and bad.accepted == [] and len(bad.violations) == 1


def test_merging_and_substitution(client):
    with (
        FakeProviderAPI("sendgrid", credentials=CREDS["sendgrid"]) as sg,
        FakeProviderAPI("mailgun", credentials=CREDS["mailgun"]) as mg,
    ):
        resp = send(client, sg, "sendgrid", 2)
        assert resp.content == b"" and all(f"X-RateLimit-{h}" in resp.headers for h in ("Limit", "Remaining", "Reset"))
        m = sg.accepted[1]
        assert (m.subject, m.text, m.html) == ("Issue for R1", "Hi R1", "<p>Hi R1</p>")
        assert m.provider_message_id == resp.headers["X-Message-Id"] + ".1"
        assert dict(m.headers) == {
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Unsubscribe": "<https://example.com/u/1>",
        }
        assert m.metadata == {"campaign": "c1", "send_id": "s1"}
        resp = send(client, mg, "mailgun", 2, files={"attachment": ("a.txt", b"x")})  # multipart
        assert resp.json()["message"] == "Queued. Thank you." and mg.violations == []
        m = mg.accepted[1]
        assert (m.subject, m.text, m.headers["List-Unsubscribe"], m.metadata) == (
            "Issue for R1",
            "Hi R1",
            "<https://example.com/u/1>",
            {"send_id": "s1", "campaign": "c1"},
        )
        assert m.provider_message_id == resp.json()["id"].strip("<>") == mg.accepted[0].provider_message_id


def test_shape_and_limit_errors(client):
    pm_auth = {"X-Postmark-Server-Token": "pm-test"}
    with FakeProviderAPI("postmark", credentials=CREDS["postmark"]) as pm:
        resp = client.post(f"{pm.base_url}/email/batch", json=[postmark_msg(i) for i in range(501)], headers=pm_auth)
        assert resp.status_code == 422 and resp.json()["ErrorCode"] == 410
        resp = client.post(
            f"{pm.base_url}/email/batch",
            headers=pm_auth,
            json=[postmark_msg(0), postmark_msg(1, To="a@x.org, b@x.org"), postmark_msg(2, MessageStream="outbound")],
        )
        assert resp.status_code == 200 and [r["ErrorCode"] for r in resp.json()] == [0, 300, 300]
        assert [m.to for m in pm.accepted] == [addr(0)] and len(pm.violations) == 3

    sg_auth = {"Authorization": "Bearer SG.test"}
    with FakeProviderAPI("sendgrid", credentials=CREDS["sendgrid"]) as sg:
        for breaks in (
            {"content": sendgrid_body(1)["content"][::-1]},
            {"headers": {"X-Count": 1}},
            {"headers": {"Reply-To": "x"}},
            {"personalizations": sendgrid_body(2)["personalizations"] * 2},
            {"personalizations": [{"to": [{"email": addr(0)}, {"email": addr(1)}]}]},
        ):
            resp = client.post(f"{sg.base_url}/v3/mail/send", json={**sendgrid_body(2), **breaks}, headers=sg_auth)
            assert resp.status_code == 400 and resp.json()["errors"][0]["message"], breaks
        assert sg.accepted == [] and len(sg.violations) >= 5

    with FakeProviderAPI("mailgun", credentials=CREDS["mailgun"]) as mg:
        form = {"from": "n@example.com", "to": [addr(0), addr(1)], "subject": "s", "text": "t"}
        resp = client.post(f"{mg.base_url}/v3/mg.example.com/messages", data=form, auth=("api", "key-test"))
        assert resp.status_code == 400 and "recipient-variables" in resp.json()["message"]
        resp = client.post(f"{mg.base_url}/v3/other.example.com/messages", data=form, auth=("api", "key-test"))
        assert resp.status_code == 404 and "Domain not found" in resp.json()["message"]
        assert mg.accepted == [] and len(mg.violations) == 2

    re_auth = {"Authorization": "Bearer re_test"}
    with FakeProviderAPI("resend", credentials=CREDS["resend"]) as rs:
        batch = [
            resend_msg(0),
            resend_msg(1, tags=[{"name": "send id", "value": "x"}]),
            resend_msg(2, to=[addr(2), addr(3)]),
        ]
        resp = client.post(f"{rs.base_url}/emails/batch", json=batch, headers=re_auth)
        assert resp.status_code == 422 and rs.accepted == []
        resp = client.post(
            f"{rs.base_url}/emails/batch", json=batch, headers={**re_auth, "x-batch-validation": "permissive"}
        )
        assert resp.status_code == 200 and [e["index"] for e in resp.json()["errors"]] == [1, 2]
        assert len(resp.json()["data"]) == 1 and [m.to for m in rs.accepted] == [addr(0)]
        assert (
            client.post(
                f"{rs.base_url}/emails/batch", json=[resend_msg(i) for i in range(101)], headers=re_auth
            ).status_code
            == 422
        )

    with FakeProviderAPI("ses", credentials=CREDS["ses"]) as ses:
        url = f"{ses.base_url}/v2/email/outbound-emails"
        long_header = ses_body()
        long_header["Content"]["Simple"]["Headers"] = [
            {"Name": "List-Unsubscribe", "Value": "<https://x/" + "a" * 870 + ">"}
        ]
        body = json.dumps(long_header).encode()
        resp = client.post(url, content=body, headers=sign_ses("POST", url, body))
        assert resp.status_code == 400 and resp.headers["x-amzn-ErrorType"] == "BadRequestException"
        body = json.dumps(ses_body()).encode()
        tampered = body.replace(b"Issue 0", b"Issue 9")
        resp = client.post(url, content=tampered, headers=sign_ses("POST", url, body))
        assert resp.status_code == 403 and "signature we calculated does not match" in resp.json()["message"]
        assert ses.accepted == [] and len(ses.violations) == 2


def test_faults(client):
    with FakeProviderAPI("postmark", credentials=CREDS["postmark"]) as pm:
        pm.fail_next(
            Fault.status(429, retry_after=0.5), Fault.drop(), Fault.accept_then_drop(), Fault.slow(0.3), Fault.reject(1)
        )
        resp = send(client, pm, "postmark")
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "0.5" and resp.json()["ErrorCode"] == 429
        with pytest.raises(httpx.RemoteProtocolError):
            send(client, pm, "postmark")
        assert pm.accepted == []
        with pytest.raises(httpx.RemoteProtocolError):
            send(client, pm, "postmark")
        assert len(pm.accepted) == 2
        start = time.monotonic()
        assert send(client, pm, "postmark").status_code == 200 and time.monotonic() - start >= 0.3
        resp = send(client, pm, "postmark")
        assert [r["ErrorCode"] for r in resp.json()] == [0, 406] and len(pm.accepted) == 5
        assert [r.status for r in pm.requests] == [429, 0, 0, 200, 200] and pm.violations == []
        found = client.get(
            f"{pm.base_url}/messages/outbound",
            params={"count": 50, "offset": 0, "metadata_send_id": "s1"},
            headers={"X-Postmark-Server-Token": "pm-test"},
        ).json()
        assert found["TotalCount"] == 2 and found["Messages"][0]["To"] == [{"Email": addr(1), "Name": None}]

    with FakeProviderAPI("sendgrid", credentials=CREDS["sendgrid"]) as sg:
        sg.fail_next(Fault.status(429, retry_after=2), Fault.reject(0))
        resp = send(client, sg, "sendgrid")
        assert resp.status_code == 429 and resp.headers["X-RateLimit-Remaining"] == "0"
        assert int(resp.headers["X-RateLimit-Reset"]) >= time.time() + 1 and "Retry-After" not in resp.headers
        assert send(client, sg, "sendgrid").status_code == 400 and sg.accepted == []

    with FakeProviderAPI("mailgun", credentials=CREDS["mailgun"]) as mg:
        mg.fail_next(Fault.status(503), Fault.reject())
        assert send(client, mg, "mailgun").status_code == 503 and send(client, mg, "mailgun").status_code == 400
        assert send(client, mg, "mailgun").status_code == 200 and len(mg.accepted) == 2

    key = {"headers": {"Idempotency-Key": "issue-1/batch-0"}}
    with FakeProviderAPI("resend", credentials=CREDS["resend"]) as rs:
        rs.fail_next(Fault.status(429, retry_after=1), Fault.accept_then_drop())
        resp = send(client, rs, "resend", **key)
        assert resp.status_code == 429 and resp.headers["retry-after"] == "1" and resp.headers["ratelimit-reset"] == "1"
        with pytest.raises(httpx.RemoteProtocolError):
            send(client, rs, "resend", **key)
        resp = send(client, rs, "resend", **key)  # replay: same ids, nothing new
        assert [d["id"] for d in resp.json()["data"]] == [m.provider_message_id for m in rs.accepted]
        assert len(rs.accepted) == 2 and rs.accepted[0].idempotency_key == "issue-1/batch-0"
        resp = client.post(
            f"{rs.base_url}/emails/batch",
            json=[resend_msg(5)],
            headers={"Authorization": "Bearer re_test", **key["headers"]},
        )
        assert resp.status_code == 409 and len(rs.accepted) == 2
        rs.fail_next(Fault.reject(0))
        resp = send(client, rs, "resend", headers={"x-batch-validation": "permissive"})
        assert resp.json()["errors"][0]["index"] == 0 and len(resp.json()["data"]) == 1 and len(rs.accepted) == 3

    with FakeProviderAPI("ses", credentials=CREDS["ses"]) as ses:
        ses.fail_next(Fault.reject(), Fault.status(429))
        resp = send(client, ses, "ses")
        assert resp.status_code == 400 and resp.headers["x-amzn-ErrorType"] == "MessageRejected"
        assert "not verified" in resp.json()["message"]
        resp = send(client, ses, "ses")
        assert resp.status_code == 429 and resp.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
        assert send(client, ses, "ses").json()["MessageId"] == ses.accepted[0].provider_message_id
