"""Planning: from a pilot bank to advice. Fitted accuracy-vs-samples curves, the N that reaches a
target, what a budget buys, and the cost model (samples, tokens, dollars) in ``plan``/``cost``;
adaptive rules and allocators replayed on the bank, each one's cheapest setting reaching a target,
and the live adaptive budget in ``simulation``.
"""
