"""One transaction over several ``*_no_commit`` steps, for an edge that composes them (the
inbound recorder: duplicate check, customer, inbound row and flow in one commit)."""

from crm_core.services._sql import single_write, unit_of_work

__all__ = ["single_write", "unit_of_work"]
