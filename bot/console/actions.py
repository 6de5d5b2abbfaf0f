"""Changes a supervisor makes in the console go through the same code as the bot's: the CRM
service, then the customer told in plain words, the complaint's card and topic updated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.app import DeskApplication
from crm_core.models import ActorType, Campaign
from crm_core.services.campaigns import (
    InvalidCampaign,
    cancel_campaign,
    check_measurement,
    get_campaign,
    start_sending,
)
from handlers.agents.complaint_commands import apply_status_change
from handlers.core.context import DeskContext, update_scope
from handlers.core.send import Delivery
from handlers.supervisor.campaigns import (
    STEPS,
    create_from_answers,
    describe_buttons,
    describe_criteria,
    preview,
    take_step,
)


async def change_complaint_status(
    application: DeskApplication, *, reference: str, status: str, note: str | None, by: str
) -> Delivery:
    """Like an agent's ``/status``: raises the service's DomainError for a move the lifecycle
    forbids (nothing changed then). Returns whether the customer was told."""
    async with update_scope(application.deps.session_factory):
        return await apply_status_change(
            DeskContext(application),
            reference=reference,
            status=status,
            note=note,
            actor_type=ActorType.system,
            actor_id=None,
            actor_name=f"{by} (console)",
            details={"via": "console"},
        )


# --- campaigns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignPreview:
    campaign: Campaign
    criteria: str
    buttons: str
    count: int
    holdout: int
    samples: list[dict[str, Any]]


async def new_campaign(
    application: DeskApplication, *, fields: Mapping[str, str], created_by: int | None
) -> int:
    """The console's "new campaign" form, each field checked as ``/campaign new`` checks the
    answer to its step (raises ``InvalidCampaign`` with the reason: nothing is written then).
    Returns the draft's id; it is sent only once confirmed (:func:`send_campaign`)."""
    holdout, days = _measurement(fields)
    async with update_scope(application.deps.session_factory):
        context = DeskContext(application)
        data: dict[str, Any] = {}
        for step in STEPS:
            answer = fields.get(step, "").strip()
            await take_step(context, step, answer or ("none" if step == "buttons" else ""), data)
        campaign = await create_from_answers(
            context, data, created_by=created_by, holdout_share=holdout, attribution_days=days
        )
        assert campaign.id is not None
        return campaign.id


def _measurement(fields: Mapping[str, str]) -> tuple[float, int]:
    """The form's hold-out ("10" or "10%", default 10) and attribution days (default 14)."""
    holdout_text = fields.get("holdout", "").strip().rstrip("%").strip() or "10"
    days_text = fields.get("days", "").strip() or "14"
    try:
        holdout, days = float(holdout_text) / 100, int(days_text)
    except ValueError:
        raise InvalidCampaign(
            "The hold-out is a percentage (e.g. 10) and the window a number of days."
        ) from None
    check_measurement(holdout, days)
    return holdout, days


async def campaign_preview(application: DeskApplication, campaign_id: int) -> CampaignPreview:
    """The campaign, how many it reaches now and its message for three of them (raises
    ``CampaignNotFound``)."""
    async with update_scope(application.deps.session_factory):
        context = DeskContext(application)
        campaign = await get_campaign(session=context.session, campaign_id=campaign_id)
        count, samples = await preview(context, campaign)
        return CampaignPreview(
            campaign=campaign,
            criteria=describe_criteria(campaign.criteria),
            buttons=describe_buttons(campaign.buttons),
            count=count,
            holdout=round(count * campaign.holdout_share),
            samples=samples,
        )


async def send_campaign(application: DeskApplication, campaign_id: int) -> tuple[int, int]:
    """Freeze the segment and start sending (as the confirm button of ``/campaign send``);
    (recipients, held out). Raises ``InvalidCampaign`` for a campaign that is not a draft or
    reaches nobody."""
    async with application.deps.session_factory() as session:
        return await start_sending(session=session, campaign_id=campaign_id)


async def stop_campaign(application: DeskApplication, campaign_id: int) -> int:
    """As ``/campaign cancel``: how many recipients will not be sent."""
    async with application.deps.session_factory() as session:
        return await cancel_campaign(session=session, campaign_id=campaign_id)
