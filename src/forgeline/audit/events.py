"""What the audit log records: the kinds of security event, and who did them.

Adding a kind of event is one line in :class:`AuditEvent`; ``forgeline audit list --event``,
``GET /admin/v1/audit?event=`` and the OpenAPI document take it from there.
"""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    KEY_ROTATED = "key.rotated"
    ADMIN_AUTH_FAILED = "admin.auth_failed"
    MODEL_PROMOTED = "model.promoted"
    BACKUP_CREATED = "backup.created"
    BACKUP_RESTORED = "backup.restored"


CLI_ACTOR = "cli"
"""The command line: whoever may open the project's database."""
ANONYMOUS_ACTOR = "anonymous"
"""A request that presented no key id (no key, or one that is not a Forgeline key)."""


def admin_actor(key_id: str) -> str:
    """An admin key (``env-admin`` for ``FORGELINE_ADMIN_KEY``) acting through the admin API."""
    return f"admin-key:{key_id}"


def key_actor(key_id: str) -> str:
    """Whoever presented a key with this id: its secret was not checked, or did not match."""
    return f"key:{key_id}"
