"""The one error handler: log with context, tell the person briefly, never show a traceback.

- ``crm_core.errors.DomainError`` (bad input, a complaint that cannot move...) is the user's
  doing: its friendly message is sent as is (template ``domain_error``) and logged at INFO.
- Telegram refusing to deliver (the customer blocked the bot) is logged at INFO; nothing to say.
- Anything else is a bug: logged at ERROR with the traceback and the update's ids, and the chat
  gets the short ``apology`` template.

The inbound Interaction was written before the failing handler ran (``handlers.core.inbound``), so
the customer's message is not lost from the CRM.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.error import Forbidden, NetworkError

from crm_core.errors import DomainError
from handlers.core.context import DeskContext, current_scope
from handlers.core.send import answer_query, reply

log = logging.getLogger(__name__)


def describe_update(update: object) -> dict[str, Any]:
    """Ids that let an operator find the update in the logs and the CRM."""
    if not isinstance(update, Update):
        return {"update": type(update).__name__}
    chat, user = update.effective_chat, update.effective_user
    return {
        "update_id": update.update_id,
        "chat_id": chat.id if chat else None,
        "chat_type": chat.type if chat else None,
        "user_id": user.id if user else None,
    }


async def on_error(update: object, context: DeskContext) -> None:
    error = context.error
    where = describe_update(update)
    handler = _failing_handler_name(error)
    try:
        scope = current_scope()
    except RuntimeError:
        scope = None
    if scope is not None:
        # The failed handler may have left the transaction broken; start clean.
        await scope.session.rollback()

    if isinstance(error, DomainError):
        log.info("domain error in %s %s: %s", handler, where, error)
        await _tell(update, context, "domain_error", message=str(error))
        return
    if isinstance(error, Forbidden):
        log.info("Telegram refused delivery in %s %s: %s", handler, where, error)
        return
    if isinstance(error, NetworkError) and not isinstance(update, Update):
        log.warning("network error while polling: %s", error)
        return
    log.error("unhandled error in %s %s", handler, where, exc_info=error)
    await _tell(update, context, "apology")


async def _tell(update: object, context: DeskContext, template: str, **ctx: Any) -> None:
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    await answer_query(update)  # stop the button's spinner; the text goes to the chat below
    try:
        await reply(context, template, **ctx)
    except Exception:
        log.warning("could not tell chat %s of an error", update.effective_chat.id, exc_info=True)


def _failing_handler_name(error: BaseException | None) -> str:
    """The outermost frame of our handlers in the traceback: the callback that failed."""
    tb = error.__traceback__ if error else None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith("handlers.") or module.startswith("tests."):
            return f"{module}.{tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return "?"
