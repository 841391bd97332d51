"""The audit log: an append-only, hash-chained table of security events.

Keys created, revoked and rotated (by the CLI or the admin API, in the same transaction as the
change), failed authentications on the admin API, and model promotions. Each row's hash covers
its fields and the previous row's hash (:mod:`~forgeline.audit.chain`), so ``verify`` finds an
edited, deleted or inserted row and names it (:mod:`~forgeline.audit.verify` says what it can
and cannot find); triggers refuse UPDATE and DELETE where the database allows.

    with db.write() as session:
        ...  # the change
        audit.record(session, AuditEvent.KEY_REVOKED, CLI_ACTOR, "key:0123abcd4567")
    with db.read() as session:
        audit.list_events(session, event=AuditEvent.KEY_REVOKED, limit=20)
        audit.verify(session).problems
"""

from forgeline.audit.chain import Anchor, AuditError, DetailValue
from forgeline.audit.events import (
    ANONYMOUS_ACTOR,
    CLI_ACTOR,
    AuditEvent,
    admin_actor,
    key_actor,
)
from forgeline.audit.log import (
    MAX_LIST,
    AuditRecord,
    list_events,
    parse_event,
    parse_since,
    record,
)
from forgeline.audit.verify import Problem, Verification, verify

__all__ = [
    "ANONYMOUS_ACTOR",
    "CLI_ACTOR",
    "MAX_LIST",
    "Anchor",
    "AuditError",
    "AuditEvent",
    "AuditRecord",
    "DetailValue",
    "Problem",
    "Verification",
    "admin_actor",
    "key_actor",
    "list_events",
    "parse_event",
    "parse_since",
    "record",
    "verify",
]
