"""Domain errors. Each carries a message fit to show a person; the edge translates them."""


class DomainError(Exception):
    """Base of every error a user can cause; ``str(err)`` is a clear, friendly explanation."""


class NotFound(DomainError):
    pass


class CustomerNotFound(NotFound):
    pass


class ComplaintNotFound(NotFound):
    pass


class HandoffNotFound(NotFound):
    pass


class AgentNotFound(NotFound):
    pass


class SnippetNotFound(NotFound):
    """No canned reply by that name."""


class InvalidInput(DomainError):
    """Bad user input: a malformed phone, e-mail, score, category..."""


class InvalidPhone(InvalidInput):
    pass


class InvalidEmail(InvalidInput):
    pass


class InvalidTransition(DomainError):
    """A complaint or handoff cannot move to the requested status from where it is."""


class AlreadyClaimed(DomainError):
    """Another agent owns this handoff already."""

    def __init__(self, message: str, *, agent_name: str | None = None) -> None:
        super().__init__(message)
        self.agent_name = agent_name


class ImportFailed(DomainError):
    """A whole import file was rejected (not CSV, no usable columns...)."""
