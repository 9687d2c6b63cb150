"""Finish reasons a bank sample can carry beyond the backends' ``stop`` / ``length``."""

LOW_CONFIDENCE = "low_confidence"
"""The finish reason of a trace the online early stop ended (its answer is None, its
``partial_answer`` what its text had reached)."""
