"""Scoring: rewards for candidates (reward models, process reward models, LLM judge, log-prob
confidence), written into banks under a scorer's name.
"""
