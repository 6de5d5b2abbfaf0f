"""Complaints other systems file and may well send twice (a retried request, a re-sent web
form): filed once per key. The key is kept on the filing's timeline event, whose unique
constraint makes the filing and the key one write: two concurrent filings under one key yield
one complaint, the loser's transaction writing nothing."""

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.models import Complaint, ComplaintCategory, Interaction, Severity
from crm_core.services._sql import unit_of_work
from crm_core.services.complaints import file_complaint
from crm_core.sla import SlaPolicy


@dataclass(frozen=True)
class FiledComplaint:
    complaint: Complaint
    created: bool  # False: filed before under this key; that complaint, as it is now


async def file_complaint_once(
    *,
    session: AsyncSession,
    idempotency_key: str,
    customer_id: int,
    category: ComplaintCategory,
    description: str,
    severity: Severity,
    channel: str,
    sla: SlaPolicy | None = None,
) -> FiledComplaint:
    earlier = await _filed_under(session, idempotency_key)
    if earlier is not None:
        return FiledComplaint(earlier, created=False)
    try:
        complaint = await file_complaint(
            session=session,
            customer_id=customer_id,
            category=category,
            description=description,
            severity=severity,
            sla=sla,
            channel=channel,
            idempotency_key=idempotency_key,
        )
    except IntegrityError:  # filed meanwhile by a concurrent request with the same key
        await session.rollback()
        earlier = await _filed_under(session, idempotency_key)
        if earlier is None:
            raise
        return FiledComplaint(earlier, created=False)
    return FiledComplaint(complaint, created=True)


async def _filed_under(session: AsyncSession, key: str) -> Complaint | None:
    async with unit_of_work(session):
        stmt = (
            select(Complaint)
            .join(Interaction, col(Interaction.complaint_id) == col(Complaint.id))
            .where(Interaction.idempotency_key == key)
        )
        return (await session.exec(stmt)).first()
