"""The customer's side: a private chat with the bot. Which handlers exist and in which order:
``registration``."""
