"""Every PTB handler group deskbot uses, in the order an update passes them.

PTB runs, for each update, the first matching handler of every group, lowest number first; a
handler raising ``ApplicationHandlerStop`` ends the update there. The registration itself is in
``handlers/__init__.py``; this module only names the numbers, so no other module invents one.
"""

from __future__ import annotations

from enum import IntEnum


class Group(IntEnum):
    # Identify the customer and record the inbound Interaction before anything can fail; a
    # redelivered update stops here.
    INBOUND = -3
    # A flow in progress (complaint, rating comment) takes the message as its next step.
    FLOWS = -2
    # A customer in an open handoff: the message goes to the agents, not to the bot.
    RELAY = -1
    # Commands, buttons and the knowledge base; the fallbacks come last within it.
    CONVERSATION = 0
