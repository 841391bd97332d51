"""Idempotency-Key rows: the first response to a request, replayed to its retries.

A key is claimed in the same transaction as the call's usage record, so a response is stored
exactly when it is billed. A generation call claims its key when it starts, with status 0 (still
running): a retry meanwhile is told so (409), and the row gets the response when the call ends.
A row past retention no longer counts and is taken over by the next call with its key.

Bodies are stored sealed (AES-256-GCM under the database's data keys, see
:mod:`forgeline.privacy.sealing`): a reply holds what a model said about a customer's input, and
often the input itself. The seal's context is the row's tenant, key, request hash and request
id, so a body copied into another row does not open. Rows written before bodies were sealed
(replayable for a day after the upgrade) are read as they are.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, delete, select, update

from forgeline.billing.records import (
    IDEMPOTENCY_RETENTION,
    Idempotency,
    IdempotencyConflict,
    IdempotencyInProgress,
    IdempotencyUnreadable,
    Replayed,
    StoredResponse,
    Usage,
)
from forgeline.db.tables import IdempotentResponse
from forgeline.db.upsert import insert_ignoring_conflict
from forgeline.privacy.sealing import KeyRing, SealError, is_sealed

RUNNING = 0
"""The status of a claim whose call has not ended yet."""


def _context(tenant_id: int, idempotency: Idempotency, request_id: str) -> bytes:
    fields = ("idempotent-response", str(tenant_id), idempotency.key, idempotency.request_hash)
    return "\0".join((*fields, request_id)).encode()


def _sealed_body(
    keys: KeyRing, usage: Usage, idempotency: Idempotency, response: StoredResponse | None
) -> str:
    if response is None:
        return ""
    return keys.seal(response.body, _context(usage.tenant_id, idempotency, usage.request_id))


def claim(
    connection: Connection,
    keys: KeyRing,
    usage: Usage,
    idempotency: Idempotency,
    response: StoredResponse | None,
) -> Replayed | Exception | None:
    """Store ``response`` (None: the call is still running) under the key; or, when an earlier
    request holds the key, what this call is to answer instead (an exception is returned,
    not raised: it fails this call, not the whole batch)."""
    values = {
        "tenant_id": usage.tenant_id,
        "idempotency_key": idempotency.key,
        "key_id": usage.key_id,
        "request_hash": idempotency.request_hash,
        "request_id": usage.request_id,
        "status": response.status if response else RUNNING,
        "body": _sealed_body(keys, usage, idempotency, response),
        "created_at": usage.at,
    }
    expired = IdempotentResponse.created_at <= usage.at - IDEMPOTENCY_RETENTION
    for _ in range(2):  # a row swept between the insert and the read is claimed on retry
        if insert_ignoring_conflict(
            connection, IdempotentResponse, overwrite_where=expired, **values
        ):
            return None
        try:
            earlier = stored_response(connection, keys, usage.tenant_id, idempotency, usage.at)
        except (IdempotencyConflict, IdempotencyInProgress, IdempotencyUnreadable) as exc:
            return exc
        if earlier is not None:
            return Replayed(earlier)
    return IdempotencyInProgress(f"Idempotency-Key '{idempotency.key}' is busy; retry shortly")


def finish_claim(
    connection: Connection,
    keys: KeyRing,
    usage: Usage,
    idempotency: Idempotency,
    response: StoredResponse | None,
) -> None:
    """Give a running call's claim its response (or release it when there is none)."""
    if response is None:
        release_claim(connection, usage, idempotency)
        return
    connection.execute(
        update(IdempotentResponse)
        .where(_own_claim(usage, idempotency))
        .values(status=response.status, body=_sealed_body(keys, usage, idempotency, response))
    )


def release_claim(connection: Connection, usage: Usage, idempotency: Idempotency) -> None:
    """A refused call is not a response to replay: let a retry try again."""
    connection.execute(delete(IdempotentResponse).where(_own_claim(usage, idempotency)))


def stored_response(
    connection: Connection, keys: KeyRing, tenant_id: int, idempotency: Idempotency, now: datetime
) -> StoredResponse | None:
    """The response stored for this tenant's Idempotency-Key, unless it is past retention
    (then the retry is a new call, whether or not the sweeper has deleted the row yet)."""
    row = connection.execute(
        select(
            IdempotentResponse.request_hash,
            IdempotentResponse.status,
            IdempotentResponse.body,
            IdempotentResponse.request_id,
        ).where(
            _key_row(tenant_id, idempotency.key)
            & (IdempotentResponse.created_at > now - IDEMPOTENCY_RETENTION)
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key '{idempotency.key}' was used for a different request"
        )
    if row.status == RUNNING:
        raise IdempotencyInProgress(
            f"a request with Idempotency-Key '{idempotency.key}' is still running; retry when "
            "it has ended"
        )
    if not is_sealed(row.body):
        return StoredResponse(row.status, row.body.encode(), row.request_id)
    try:
        body = keys.open(row.body, _context(tenant_id, idempotency, row.request_id))
    except SealError as exc:
        raise IdempotencyUnreadable(
            f"the answer stored for Idempotency-Key '{idempotency.key}' cannot be decrypted "
            f"({exc}); it is not answered or billed again: use a new key for a new call"
        ) from None
    return StoredResponse(row.status, body, row.request_id)


def _key_row(tenant_id: int, key: str) -> ColumnElement[bool]:
    return (IdempotentResponse.tenant_id == tenant_id) & (IdempotentResponse.idempotency_key == key)


def _own_claim(usage: Usage, idempotency: Idempotency) -> ColumnElement[bool]:
    return _key_row(usage.tenant_id, idempotency.key) & (
        IdempotentResponse.request_id == usage.request_id
    )
