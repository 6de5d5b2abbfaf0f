"""The agents' side: the agents' group, where people pick conversations up. Which handlers
exist and in which order: ``registration``."""
