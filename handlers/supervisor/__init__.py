"""Supervisors' commands, in a private chat or the agents' group. Which handlers exist:
``registration``."""
