"""``ttscale bench``: one pipeline from a model and a dataset to a report folder (sample, score,
evaluate, fit, write ``report.md``, plots and ``results.json``).
"""
