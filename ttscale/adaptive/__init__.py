"""Adaptive sampling: stopping rules read a question's votes as they arrive, allocators spread a
budget over questions, and replays (sampled and exact over every order) score both on a bank.
"""
