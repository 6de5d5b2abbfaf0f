"""Channel identities given to a known customer by another system: the shop registers its
account id for customer #42, so that the next lookup by that id finds them."""

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm_core.errors import DomainError
from crm_core.models import ChannelIdentity
from crm_core.services._sql import dialect_insert, resolve_customer, unit_of_work


class IdentityTaken(DomainError):
    """The channel id already names another customer (a merge, not a link, would join them)."""


@dataclass(frozen=True)
class AttachedIdentity:
    identity: ChannelIdentity
    created: bool  # False: it was this customer's already


async def attach_identity(
    *,
    session: AsyncSession,
    customer_id: int,
    channel: str,
    external_id: str,
    username: str | None = None,
    display_name: str | None = None,
) -> AttachedIdentity:
    """Give the customer (the merge survivor) the identity ``(channel, external_id)``; again
    for the same customer changes nothing; for another one raises :class:`IdentityTaken`.
    Race-safe: the insert is ``ON CONFLICT DO NOTHING`` on the identity's unique key."""
    async with unit_of_work(session):
        customer = await resolve_customer(session, customer_id)
        row = ChannelIdentity(
            channel=channel,
            external_id=external_id,
            username=username,
            display_name=display_name,
            customer_id=customer.id,  # type: ignore[arg-type]
        )
        stmt = (
            dialect_insert(session, ChannelIdentity)
            .values(**row.model_dump(exclude={"id"}))
            .on_conflict_do_nothing(index_elements=["channel", "external_id"])
            .returning(ChannelIdentity.id)
        )
        created = (await session.exec(stmt)).scalar_one_or_none() is not None
        stored = (
            await session.exec(
                select(ChannelIdentity).where(
                    ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
                )
            )
        ).one()
        if stored.customer_id != customer.id:
            raise IdentityTaken(
                f"{channel} id {external_id!r} belongs to customer #{stored.customer_id}."
            )
    return AttachedIdentity(identity=stored, created=created)
