"""Tables of re-consent campaigns and their recipients.

A ``Campaign`` is what the business asked for (template, audience, policy version, deadline,
pace) and where it stands. A ``CampaignRecipient`` is one contact of its audience, with two
independent tracks: ``state`` follows the message (pending -> claimed -> queued -> sent ->
delivered -> read, or skipped / failed), ``outcome`` what the contact did about it (reconfirmed,
declined, opted_out, lapsed). Keeping them apart is what lets the quality guard divide opt-outs
by deliveries: a delivered message stays counted as delivered after its recipient opted out.

Recipients have no unique (campaign, contact) index on purpose: merging two contacts re-points
every row that references a contact, and two recipients of one campaign may turn out to be one
person. Uniqueness comes from how rows are written (one keyset page at a time, CSV lists
de-duplicated), and the message id derives from the recipient's own id
(``campaign:<campaign id>:<recipient id>``, see `bot.campaigns.messages`), so it needs no column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from bot.db.models import CONTACTS_TABLE, UTCDateTime, utcnow

CAMPAIGNS_TABLE: Final = "campaigns"
RECIPIENTS_TABLE: Final = "campaign_recipients"

_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class Campaign(SQLModel, table=True):
    """One re-consent campaign. List-valued settings are stored as JSON text.

    ``status`` is draft, running, paused or completed; ``paused_by`` says who paused it
    (operator or guard) and ``pause_reason`` why. ``audience_cursor`` is the last contact id the
    audience query has turned into recipients, ``audience_done`` whether it reached the end.
    ``capped_until`` is set while the daily cap holds the campaign back.
    """

    __tablename__ = CAMPAIGNS_TABLE
    __table_args__ = (Index("ix_campaigns_status", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(128), nullable=False)
    template_name: str = Field(sa_type=String(512), nullable=False)
    template_language: str = Field(sa_type=String(16), nullable=False)
    buttons_json: str = Field(sa_type=Text, nullable=False)
    body_parameters_json: str = Field(sa_type=Text, nullable=False)
    categories_json: str = Field(sa_type=Text, nullable=False)
    older_than_days: int | None = Field(default=None, sa_type=Integer)
    policy_below: str | None = Field(default=None, sa_type=String(64))
    from_list: bool = Field(default=False, sa_type=Boolean, nullable=False)
    policy_version: str = Field(sa_type=String(64), nullable=False)
    deadline: datetime = Field(sa_type=UTCDateTime, nullable=False)
    on_deadline: str = Field(sa_type=String(8), nullable=False)
    rate: float = Field(sa_type=Float, nullable=False)
    daily_cap: int | None = Field(default=None, sa_type=Integer)
    optout_threshold: float = Field(sa_type=Float, nullable=False)
    status: str = Field(sa_type=String(16), nullable=False)
    paused_by: str | None = Field(default=None, sa_type=String(16))
    pause_reason: str | None = Field(default=None, sa_type=Text)
    audience_cursor: int = Field(default=0, sa_type=Integer, nullable=False)
    audience_done: bool = Field(default=False, sa_type=Boolean, nullable=False)
    capped_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class CampaignRecipient(SQLModel, table=True):
    """One contact of a campaign's audience and what became of the campaign's message.

    ``categories_json`` lists the categories the contact was asked about (those of the campaign
    that still matched when the message went out); ``skip_reason`` says why a recipient was not
    messaged; ``error_code`` / ``error_title`` hold Meta's failure.
    """

    __tablename__ = RECIPIENTS_TABLE
    __table_args__ = (
        Index("ix_campaign_recipients_campaign_state", "campaign_id", "state", "id"),
        Index("ix_campaign_recipients_campaign_claimed", "campaign_id", "claimed_at"),
        Index("ix_campaign_recipients_contact", "contact_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG_ID)
    campaign_id: int = Field(
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CAMPAIGNS_TABLE}.id", ondelete="CASCADE")],
        nullable=False,
    )
    contact_id: int = Field(
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CONTACTS_TABLE}.id", ondelete="CASCADE")],
        nullable=False,
    )
    state: str = Field(sa_type=String(16), nullable=False)
    outcome: str | None = Field(default=None, sa_type=String(16))
    skip_reason: str | None = Field(default=None, sa_type=String(32))
    categories_json: str | None = Field(default=None, sa_type=Text)
    wamid: str | None = Field(default=None, sa_type=String(256))
    error_code: int | None = Field(default=None, sa_type=Integer)
    error_title: str | None = Field(default=None, sa_type=Text)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
