"""Scoring: rewards for candidates (reward models, process reward models, LLM judge, log-prob
confidence), written into banks under a scorer's name.

- ``base``: the Scorer protocols, the configs' base and shared checks;
- ``confidence``, ``reward_model``, ``prm``, ``judge``: one kind of scorer each;
- ``resumable``: :func:`score_bank`, resumable scoring of a bank file;
- ``registry``: the scorer kinds by name and :func:`make_scorer`.
"""
