"""Selection: which of a problem's candidates to answer with. Tie-breaking, the selectors (pure
functions on :class:`~ttscale.answers.candidates.Candidates`, each with a batched twin), their
registry by name, and policy presets (TOML files in ``policies/``).
"""
