"""Storage: contacts, transcripts, the consent ledger and conversations (SQLModel on SQLite or
PostgreSQL).

``create_engine`` + ``session_factory`` give the sessions the repositories work with. Schema
migrations live in ``bot.db.migrate`` (``from bot.db.migrate import migrate``); the function is
deliberately not re-exported here, where its name would shadow the module.
"""

from bot.db.consent_models import ConsentEvent, ConsentState, Conversation, LedgerHead
from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, ping, session_factory
from bot.db.ledger import (
    ConsentChange,
    ConsentView,
    ConversationRecord,
    LedgerRepository,
)
from bot.db.ledger_verify import ChainProblem, ProblemKind, VerifyReport
from bot.db.models import Contact, ContactIdentity, TranscriptEntry
from bot.db.transcript import TranscriptRepository

__all__ = [
    "ChainProblem",
    "ConsentChange",
    "ConsentEvent",
    "ConsentState",
    "ConsentView",
    "Contact",
    "ContactIdentity",
    "ContactRepository",
    "Conversation",
    "ConversationRecord",
    "LedgerHead",
    "LedgerRepository",
    "ProblemKind",
    "TranscriptEntry",
    "TranscriptRepository",
    "VerifyReport",
    "create_engine",
    "ping",
    "session_factory",
]
