"""Personal editor accounts: argon2id passwords, an optional TOTP second factor, signed single-use links to set a
password, and the rules that keep a site manageable (one account per address, never without an enabled admin).

Used by `verdicts editor …` and by the editor's account pages alike.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from html import escape

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session, col, func, select

from pipeline.config import Settings
from pipeline.delivery.oneoff import send_automatic
from pipeline.email.personal import Body
from pipeline.errors import InvalidInput, InvalidState, NotFound
from pipeline.store import audit
from pipeline.store.models import EditorAccount, EditorSession, Role, saved_id, utcnow
from subscribers.addresses import normalise_email

#: argon2id with the library's defaults (RFC 9106's second recommended setting).
HASHER = PasswordHasher()
#: Verified when no account matches, so a wrong address takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_hex(16))
MIN_PASSWORD, MAX_PASSWORD = 12, 1000
LINK_HOURS = 48
CAMPAIGN = "accounts"


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidInput(f"the role {value!r} is not one of admin, editor, reviewer: choose one of those") from None


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def password_matches(password_hash: str | None, given: str) -> bool:
    """Constant work whether or not there is a hash to check (an unknown address, an unset password)."""
    try:
        return HASHER.verify(password_hash or _DUMMY_HASH, given) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"the password has {len(password)} characters: use at least {MIN_PASSWORD}"
    if len(password) > MAX_PASSWORD:
        return f"the password has {len(password)} characters: use at most {MAX_PASSWORD}"
    return None


def fingerprint(settings: Settings, secret: str | None) -> str:
    """A short keyed digest of a password (hash): sessions and links made with it end when it changes."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, (secret or "").encode(), hashlib.sha256).hexdigest()[:16]


def accounts_exist(session: Session) -> bool:
    """From the first account on, the shared password no longer logs anyone in."""
    return session.exec(select(func.count()).select_from(EditorAccount)).one() > 0


def find_account(session: Session, email: str) -> EditorAccount:
    address = normalise_email(email)
    account = session.exec(select(EditorAccount).where(EditorAccount.email == address)).first()
    if account is None:
        raise NotFound(f"no editor account for {address}: `verdicts editor list` shows them")
    return account


def add_account(session: Session, email: str, role: Role, *, actor: str | None = None) -> EditorAccount:
    """A new account, on the audit trail as ``account.add`` when a person (``actor``) made it."""
    address = normalise_email(email)
    if session.exec(select(EditorAccount).where(EditorAccount.email == address)).first() is not None:
        raise InvalidInput(f"{address} already has an editor account: change its role instead")
    account = EditorAccount(email=address, role=role)
    session.add(account)
    session.flush()
    _audit(session, actor, "account.add", account)
    return account


def _audit(session: Session, actor: str | None, action: str, account: EditorAccount, **extra: object) -> None:
    if actor is not None:
        audit.record(session, actor, action, detail={"account": account.email, "role": account.role.value, **extra})


def _enabled_admins(session: Session) -> int:
    return session.exec(
        select(func.count()).where(EditorAccount.role == Role.admin, col(EditorAccount.disabled_at).is_(None))
    ).one()


def _keep_an_admin(session: Session, account: EditorAccount, change: str) -> None:
    if account.role is Role.admin and account.disabled_at is None and _enabled_admins(session) <= 1:
        raise InvalidState(f"{account.email} is the last admin: make another account admin before you {change}")


def set_role(session: Session, account: EditorAccount, role: Role, *, actor: str | None = None) -> None:
    """Applies at the account's next request: the session reads the role each time."""
    if role is not Role.admin:
        _keep_an_admin(session, account, f"make them {role.value}")
    before, account.role = account.role, role
    session.add(account)
    session.flush()
    _audit(session, actor, "account.role", account, before=before.value)


def disable(session: Session, account: EditorAccount, by: int | None = None, *, actor: str | None = None) -> None:
    """The account can no longer log in, and its open sessions end now, on every process."""
    if account.id == by:
        raise InvalidState("you cannot disable your own account: ask another admin")
    _keep_an_admin(session, account, "disable them")
    if account.disabled_at is None:
        account.disabled_at = utcnow()
        _audit(session, actor, "account.disable", account)
    session.add(account)
    end_sessions(session, saved_id(account))


def clear_second_factor(session: Session, account: EditorAccount, *, actor: str) -> None:
    """A lost authenticator: the account logs in with its password alone until it enrols again (an admin under
    VERDICTS_REQUIRE_2FA is led to enrol first). Its sessions end: whoever held the old factor is out."""
    account.totp_secret = account.totp_pending = account.totp_last_step = None
    session.add(account)
    end_sessions(session, saved_id(account))
    _audit(session, actor, "account.reset_2fa", account)


def end_sessions(session: Session, account_id: int) -> None:
    session.connection().execute(sa.delete(EditorSession).where(col(EditorSession.account_id) == account_id))
    session.flush()


def set_password(session: Session, account: EditorAccount, password: str) -> None:
    if why := password_problem(password):
        raise InvalidInput(why)
    account.password_hash = hash_password(password)
    session.add(account)
    end_sessions(session, saved_id(account))  # a reset logs out every copy of the old session


def _links(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt="editor-password-link")


def password_link(settings: Settings, account: EditorAccount) -> str:
    """Signed, expiring in ``LINK_HOURS``, and single use: it names the current password's fingerprint, which
    setting a password changes."""
    token = _links(settings).dumps([saved_id(account), fingerprint(settings, account.password_hash)])
    return f"{settings.base_url.rstrip('/')}/editor/password/{token}"


def account_from_link(session: Session, settings: Settings, token: str) -> EditorAccount:
    try:
        account_id, print_ = _links(settings).loads(token, max_age=LINK_HOURS * 3600)
    except (BadSignature, ValueError, TypeError):
        account_id, print_ = None, None
    account = session.get(EditorAccount, account_id) if isinstance(account_id, int) else None
    if (
        account is None
        or account.disabled_at is not None
        or not isinstance(print_, str)
        or not hmac.compare_digest(print_, fingerprint(settings, account.password_hash))
    ):
        raise InvalidInput(
            f"this link has expired or was used already (links work once, for {LINK_HOURS} hours): "
            "ask for a new one from the password reset page"
        )
    return account


def send_link(settings: Settings, account: EditorAccount, *, welcome: bool) -> str:
    """Email the set-password link through the configured provider; returns the provider's message id."""
    link = password_link(settings, account)
    what = f"An editor account ({account.role.value}) was made for you" if welcome else "A password reset was asked"
    subject = f"{settings.from_name}: {'your editor account' if welcome else 'reset your editor password'}"
    text = (
        f"{what} at {settings.from_name}.\n\nSet your password here (the link works once, for {LINK_HOURS} "
        f"hours):\n{link}\n\nIf you did not expect this, ignore this email: nothing changes.\n"
    )
    html = (
        f'<p>{escape(what)} at {escape(settings.from_name)}.</p><p><a href="{escape(link)}">Set your password</a> '
        f"(the link works once, for {LINK_HOURS} hours).</p><p>If you did not expect this, ignore this email.</p>"
    )
    body = Body.fixed(subject, html, text)
    return send_automatic(settings, account.email, body, campaign=CAMPAIGN, ref=str(account.id), what="the email") or ""


def new_totp_secret() -> str:
    return pyotp.random_base32()


def otpauth_uri(settings: Settings, email: str, secret: str) -> str:
    """What an authenticator app takes (typed in, or pasted): no QR service ever sees the secret."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=settings.from_name)


def totp_step(secret: str, code: str, last_step: int | None) -> int | None:
    """The 30-second step ``code`` is valid for (one step of clock drift either way), or None; a step already
    used (``last_step`` or before) never counts again, so a code seen over a shoulder is spent."""
    totp = pyotp.TOTP(secret)
    now = totp.timecode(utcnow())
    given = code.strip().replace(" ", "")
    for step in (now - 1, now, now + 1):
        if (last_step is None or step > last_step) and hmac.compare_digest(
            totp.generate_otp(step).encode(), given.encode("utf-8", "surrogatepass")
        ):
            return step
    return None
