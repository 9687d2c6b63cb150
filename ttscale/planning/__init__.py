"""Planning: from a pilot bank to advice. Fitted accuracy-vs-samples curves, the N that reaches a
target, what a budget buys, and the cost model (samples, tokens, dollars).
"""
