"""The tables of the pipeline: content (comparisons), issues and the delivery ledger."""

from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Field, Relationship, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zones; storing naive UTC and re-attaching the zone on the way out
    keeps comparisons such as ``published_at <= now`` correct everywhere.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def str_enum(enum_cls: type[Enum]) -> sa.Enum:
    """A VARCHAR holding the enum's values, read back as enum members (no native DB enum to migrate)."""
    return sa.Enum(enum_cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


def utcnow() -> datetime:
    return datetime.now(UTC)


class Comparison(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=200)
    title: str = Field(max_length=300)
    question: str = Field(default="", max_length=500)
    url: str = Field(max_length=2000)
    published_at: datetime = Field(sa_type=UTCDateTime, index=True)
    # First import: a comparison that arrives after the issue that should have had it goes in the next one.
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    tools: list["Tool"] = Relationship(
        back_populates="comparison",
        sa_relationship_kwargs={"cascade": "all, delete-orphan", "order_by": "Tool.position"},
    )
    reviews: list["Review"] = Relationship(
        back_populates="comparison",
        sa_relationship_kwargs={"cascade": "all, delete-orphan", "order_by": "Review.position"},
    )


class Tool(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("comparison_id", "slug"),)

    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", ondelete="CASCADE", index=True)
    position: int
    slug: str = Field(max_length=200)
    name: str = Field(max_length=200)
    category: str = Field(max_length=200)
    tagline: str = Field(max_length=500)
    description: str
    entry_price: str = Field(max_length=100)
    url: str | None = Field(default=None, max_length=2000)
    # None = no community vote imported ("—"), as opposed to 0/0.
    community_ship: int | None = None
    community_skip: int | None = None

    comparison: Comparison = Relationship(back_populates="tools")


class Review(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", ondelete="CASCADE", index=True)
    tool_slug: str = Field(max_length=200)
    position: int
    reviewer: str = Field(max_length=200)
    lens: str | None = Field(default=None, max_length=200)
    verdict: str = Field(max_length=4)
    quote: str

    comparison: Comparison = Relationship(back_populates="reviews")


class Vote(SQLModel, table=True):
    """One reader's current verdict on one tool (changeable), from the email of one issue.

    Erasing the reader sets ``subscriber_id`` to NULL: the vote still counts, nobody's name is on it.
    """

    __table_args__ = (
        sa.UniqueConstraint("tool_id", "subscriber_id"),
        # Every split on a page or in an email counts votes per tool and verdict, and the editor counts
        # an issue's votes per tool: each is read from its index alone, not row by row from the table.
        sa.Index("ix_vote_tool_verdict", "tool_id", "verdict"),
        sa.Index("ix_vote_issue_tool", "issue_id", "tool_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tool_id: int = Field(foreign_key="tool.id", ondelete="CASCADE")
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="SET NULL")
    issue_id: int | None = Field(default=None, foreign_key="issue.id", ondelete="SET NULL")
    verdict: str = Field(max_length=4)
    voted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class IssueStatus(StrEnum):
    draft = "draft"
    approved = "approved"
    sending = "sending"
    paused = "paused"  # the provider was unavailable too long; `verdicts issue send` resumes
    sent = "sent"


class Issue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # One issue per ISO week, e.g. "2026-W48": building twice finds the same row.
    week: str = Field(unique=True, max_length=10)
    status: IssueStatus = Field(default=IssueStatus.draft, sa_type=str_enum(IssueStatus))
    subject: str = Field(max_length=300)
    preheader: str = Field(default="", max_length=300)
    intro: str = Field(default="")
    # Comparisons published up to this instant were considered; the next issue starts here.
    cutoff: datetime = Field(sa_type=UTCDateTime)
    more_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # An approved issue goes out at this time (None: at the next scheduler pass).
    scheduled_for: datetime | None = Field(default=None, sa_type=UTCDateTime)
    send_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Why a send paused (status paused): shown by `issue show` and the editor until it resumes.
    paused_reason: str | None = Field(default=None, max_length=1000)
    # One more with every change an editor makes: a page that shows an older one may not save or approve.
    revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Who made the last change to the words or the line-up (from the editor): with two approvals required,
    # not one of the approvers. None: nobody named (the build, the command line).
    changed_by: str | None = Field(default=None, max_length=400)


class IssueItem(SQLModel, table=True):
    __tablename__ = "issue_item"

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", ondelete="CASCADE", index=True)
    # Unique: a comparison is never in two issues.
    comparison_id: int = Field(foreign_key="comparison.id", unique=True)
    position: int


class DeliveryStatus(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed by a sender; outcome not yet recorded
    sent = "sent"
    failed = "failed"  # permanent failure, with a reason
    unknown = "unknown"  # the request may have been accepted (no answer, or the sender died): never re-sent blindly
    suppressed = "suppressed"  # the reader left between freezing and sending


class Delivery(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("issue_id", "subscriber_id"),
        sa.Index("ix_delivery_issue_status_id", "issue_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", ondelete="CASCADE")
    # NULL once the reader is erased: the count survives, the person does not.
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="SET NULL", index=True)
    email: str = Field(max_length=320)
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=str_enum(DeliveryStatus))
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    provider_message_id: str | None = Field(default=None, max_length=200, index=True)
    error: str | None = Field(default=None, max_length=1000)
    # Which provider carried it (a failover splits one send between two); webhooks look rows up by both.
    provider: str | None = Field(default=None, max_length=20)


class Welcome(SQLModel, table=True):
    """The one welcome email of a reader who confirmed through the sign-up: queued in the transaction that
    confirms them, then claimed and settled like a delivery (``DeliveryStatus``), so it goes out exactly once.

    Unique per reader: one who leaves and comes back is not welcomed again. Erasing the reader sets
    ``subscriber_id`` to NULL, as for deliveries; the address stays for the webhooks until then."""

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="SET NULL", unique=True)
    email: str = Field(max_length=320)
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=str_enum(DeliveryStatus), index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    provider_message_id: str | None = Field(default=None, max_length=200, index=True)
    provider: str | None = Field(default=None, max_length=20)
    error: str | None = Field(default=None, max_length=1000)


class DeliveryEvent(SQLModel, table=True):
    """A provider's report about one message (delivered, bounced, complained, …), from a verified webhook."""

    __tablename__ = "delivery_event"
    # Providers retry webhooks: the same event is stored once.
    __table_args__ = (sa.UniqueConstraint("provider", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    event_id: str = Field(max_length=200)
    kind: str = Field(max_length=20)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", ondelete="SET NULL", index=True)
    occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    detail: str = Field(default="", max_length=300)


class ClickCount(SQLModel, table=True):
    """Clicks on "Read the full comparison" in one issue's email, per comparison per day (UTC): a count and
    nothing else. The link carries no reader id, so no row could say who clicked."""

    __tablename__ = "click_count"

    issue_id: int = Field(foreign_key="issue.id", ondelete="CASCADE", primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", ondelete="CASCADE", primary_key=True)
    day: date = Field(primary_key=True)
    clicks: int = 0


class WebhookNonce(SQLModel, table=True):
    """A one-time value a provider signs instead of the body (Mailgun's token), spent by the first request
    that carries it: the same signature block on another event is refused. Kept, as event ids are."""

    __tablename__ = "webhook_nonce"

    provider: str = Field(primary_key=True, max_length=20)
    nonce: str = Field(primary_key=True, max_length=200)
    spent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RateLimit(SQLModel, table=True):
    """One limit's recent hits for one key (an IP network, an address): shared by every web process.

    A row per key, locked while a hit is counted, so parallel requests on any process cannot pass the
    limit together. The key is stored hashed: the table holds no address, and rows go once expired.
    """

    __tablename__ = "rate_limit"

    key_hash: str = Field(primary_key=True, max_length=64)
    bucket: str = Field(max_length=20)  # which limit: signup-ip, signup-address, login
    # Unix times of the hits still in the window, oldest first (at most the limit's size).
    hits: list[float] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class EditorSession(SQLModel, table=True):
    """A logged-in editor: the cookie holds a random id, and this row (found by its hash) decides.

    Logging out deletes the row, so a copied cookie stops working; a new password ends every session.
    """

    __tablename__ = "editor_session"

    # SHA-256 of the cookie's id: a copy of the database (a backup) logs nobody in.
    token_hash: str = Field(primary_key=True, max_length=64)
    csrf: str = Field(max_length=64)
    # Of the password it was opened with (keyed by SECRET_KEY): another password, and the session is over.
    password_fingerprint: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    # The personal account logged in; None for the shared password (which ends once any account exists).
    account_id: int | None = Field(default=None, foreign_key="editor_account.id", ondelete="CASCADE", index=True)


class ApiToken(SQLModel, table=True):
    """A key the site's scripts call the HTTP API with (``Authorization: Bearer vt_…``), made by an admin.

    Only the SHA-256 of the token is kept (a copy of the database, a backup, lets nobody in) with its first
    characters (``prefix``), which name it in lists and find its row. Revoked rows stay: who made a token, and
    when it was last used, outlive it.
    """

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunOutcome(StrEnum):
    running = "running"  # still running, or its process died (its heartbeat then stops too)
    ok = "ok"
    failed = "failed"
    stopped = "stopped"  # SIGTERM ended it after the batch in flight; the next run continues


class Heartbeat(SQLModel, table=True):
    """What the scheduler last said of itself: in the database, because `/healthz`, `/metrics` and the
    editor run in other processes (and machines) and must tell a running scheduler from a stopped one.

    One row per kind of process (``name``), shared by every scheduler: they run the same cron, and a
    second one only makes the first harmless to lose.
    """

    name: str = Field(primary_key=True, max_length=20)
    owner: str = Field(max_length=200)  # host:pid of the process that beat last
    started_at: datetime = Field(sa_type=UTCDateTime)  # when that process started
    beat_at: datetime = Field(sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # a clean stop (SIGTERM); None while it runs
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the weekly run
    next_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the next look for approved issues
    # The cron moment the last weekly run was for: a start after a stop knows whether that moment was run.
    last_run_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The last job that did something: every weekly run, and a look for approved issues that sent or failed.
    last_run_job: str | None = Field(default=None, max_length=20)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_run_finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_run_outcome: RunOutcome | None = Field(default=None, sa_type=str_enum(RunOutcome))
    last_run_message: str | None = Field(default=None, max_length=1000)


class WebhookEventStatus(StrEnum):
    pending = "pending"  # waiting for its turn, or for its next attempt
    delivered = "delivered"  # the site answered 2xx
    failed = "failed"  # not delivered within WEBHOOK_GIVE_UP_HOURS; the editor's "retry now" queues it again


class WebhookEvent(SQLModel, table=True):
    """One event for the site (``pipeline.store.site_events``), queued in the transaction of the change it tells
    of and sent in creation order by one sender at a time; the log of its attempts stays for the editor."""

    __tablename__ = "webhook_event"
    # The sender's question, "the oldest pending event", is read from this index alone.
    __table_args__ = (sa.Index("ix_webhook_event_status_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    # The envelope's id, for the site's dedupe: random, so a restored backup never reuses one.
    uid: str = Field(max_length=36, unique=True)
    type: str = Field(max_length=40)
    payload: dict[str, Any] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status: WebhookEventStatus = Field(default=WebhookEventStatus.pending, sa_type=str_enum(WebhookEventStatus))
    attempts: int = 0
    # A pending event is due then; a sender's claim moves it past its request (a lease a dead sender lets lapse).
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)
    last_status: int | None = None  # the site's HTTP status at the last attempt; None: no answer


class Role(StrEnum):
    """What an editor account may do, each role all the one before it may: reviewers preview and comment,
    editors also edit and test-send, admins also approve, send and manage accounts."""

    reviewer = "reviewer"
    editor = "editor"
    admin = "admin"

    def covers(self, needed: "Role") -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


class EditorAccount(SQLModel, table=True):
    """A person's editor login. The password is an argon2id hash (None until they set it from the emailed link);
    the TOTP secret is never shown again after enrolment."""

    __tablename__ = "editor_account"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=320)  # normalised (subscribers.addresses.normalise_email)
    role: Role = Field(sa_type=str_enum(Role))
    password_hash: str | None = Field(default=None, max_length=200)
    totp_secret: str | None = Field(default=None, max_length=64)
    # A secret shown once while enrolling, until a code from the app confirms it.
    totp_pending: str | None = Field(default=None, max_length=64)
    # The last 30-second step a code was accepted for: the same code never logs in twice.
    totp_last_step: int | None = None
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class IssueComment(SQLModel, table=True):
    """A note on an issue from anyone logged in to the editor, with the revision it was about."""

    __tablename__ = "issue_comment"

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", ondelete="CASCADE", index=True)
    revision: int
    author: str = Field(max_length=400)
    text: str = Field(max_length=4000)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IssueApproval(SQLModel, table=True):
    """One person's approval of one revision of an issue: a change (a new revision) leaves it behind."""

    __tablename__ = "issue_approval"
    __table_args__ = (sa.UniqueConstraint("issue_id", "revision", "actor"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", ondelete="CASCADE", index=True)
    revision: int
    actor: str = Field(max_length=400)
    account_id: int | None = Field(default=None, foreign_key="editor_account.id", ondelete="SET NULL")
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class _Saved(Protocol):
    id: int | None


def saved_id(row: _Saved) -> int:
    """The id the database gave a row: the tables declare ``int | None`` (None until the row is flushed),
    and code past a flush or a query must not carry that None on."""
    if row.id is None:
        raise ValueError(f"this {type(row).__name__} has no id yet: flush it first")
    return row.id


def core_table(model: type[SQLModel]) -> sa.Table:
    """A model's Core table, for the bulk statements that skip the ORM (SQLModel does not declare ``__table__``)."""
    table = sa.inspect(model).local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not mapped to one table")
    return table


class AuditEntry(SQLModel, table=True):
    """One thing a person (or the scheduler) did: who, when, what, to which issue at which revision
    (``pipeline.store.audit``). Written once, never changed: ``hash`` chains it to the entry before it."""

    __tablename__ = "audit_entry"

    # Given by the writer (one more than the last): a gap in the ids is a deleted entry.
    id: int | None = Field(default=None, primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=40)
    # No foreign key: the trail outlives what it describes, and nothing may change it through a cascade.
    issue_id: int | None = Field(default=None, index=True)
    issue_revision: int | None = None
    detail: str = Field(sa_type=sa.Text)  # canonical JSON: what changed; readers' addresses masked or hashed
    hash: str = Field(default="", max_length=64)  # set by ``audit.record`` once the row's fields are known


class AuditHead(SQLModel, table=True):
    """The trail's one-row head: how many entries were written and the last one's hash. Every writer updates it
    first, so writers take turns and the chain cannot fork; ``verify`` also finds deleted last entries by it."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    entries: int = 0
    hash: str = Field(max_length=64)
