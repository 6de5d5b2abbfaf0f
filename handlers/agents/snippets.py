"""Canned replies: ``/snippets`` lists them, ``/s name`` sends one to the customer of this
conversation (signed like any reply, the customer's first name filled in); supervisors keep
them with ``/snippet add name text`` and ``/snippet remove name``."""

from __future__ import annotations

import jinja2
from telegram import Update

from crm_core.models import Agent, Customer
from crm_core.services.snippets import delete_snippet, get_snippet, list_snippets, save_snippet
from handlers.agents.relay import relay_agent_message
from handlers.agents.threads import command_rest, handoff_for_message
from handlers.core.context import DeskContext
from handlers.core.format import clip
from handlers.core.guards import agent_only, supervisor_only
from handlers.core.send import reply

PREVIEW_CHARS = 60
# What a snippet may fill in, with the values used to check it when it is saved.
SAMPLE_VALUES = {"name": "Alex", "agent": "Sam"}


@agent_only
async def on_snippets(update: Update, context: DeskContext, agent: Agent) -> None:
    snippets = await list_snippets(session=context.session)
    rows = [{"name": s.name, "preview": clip(s.text, PREVIEW_CHARS)} for s in snippets]
    await reply(context, "agent_snippets", snippets=rows)


@agent_only
async def on_send_snippet(update: Update, context: DeskContext, agent: Agent) -> None:
    message = update.effective_message
    assert message is not None
    name = command_rest(message)
    handoff = await handoff_for_message(context, message)
    if not name or handoff is None:
        await reply(context, "agent_snippet_usage")
        return
    snippet = await get_snippet(session=context.session, name=name)  # unknown: friendly error
    customer = await context.session.get(Customer, handoff.customer_id)
    await context.session.commit()
    first_name = ((customer.name if customer else None) or "").split(" ")[0]
    text = context.deps.texts.render_text(
        snippet.text, name=first_name, agent=agent.display_name.split(" ")[0]
    )
    await relay_agent_message(update, context, agent, handoff, text=text)


@supervisor_only
async def on_manage_snippet(update: Update, context: DeskContext) -> None:
    message = update.effective_message
    assert message is not None
    words = command_rest(message).split(maxsplit=2)
    action = words[0].lower() if words else ""
    if action == "add" and len(words) == 3:
        problem = template_problem(context, words[2])
        if problem is not None:
            await reply(context, "supervisor_snippet_invalid", problem=problem)
            return
        saved = await save_snippet(session=context.session, name=words[1], text=words[2])
        await reply(context, "supervisor_snippet_saved", name=saved.name)
    elif action == "remove" and len(words) == 2:
        await delete_snippet(session=context.session, name=words[1])
        await reply(context, "supervisor_snippet_removed", name=words[1].lower())
    else:
        await reply(context, "supervisor_snippet_usage")


def template_problem(context: DeskContext, text: str) -> str | None:
    """Why ``text`` cannot be a snippet (bad template syntax, an unknown variable), or None."""
    try:
        context.deps.texts.render_text(text, **SAMPLE_VALUES)
    except jinja2.TemplateError as error:
        return str(error.message or error)
    return None
