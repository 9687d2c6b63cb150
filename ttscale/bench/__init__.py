"""``ttscale bench``: one pipeline from a model and a dataset to a report folder (sample, score,
evaluate, fit, write ``report.md``, plots and ``results.json``).

- ``config``: the resolved run (:class:`BenchConfig`) and the settings that change a figure;
- ``state``: ``bench-state.json``, the sampling settings a bank was drawn with and the run log;
- ``difficulty``: difficulty buckets (a dataset field, arithmetic steps, or the pass rate);
- ``fits``: the planner's fitted curves and each other policy's curve family;
- ``analysis``: accuracy at every k per policy and bucket, cached in ``bench-cache.json``;
- ``results``: the typed results model; ``results.json`` is its JSON dump;
- ``search``: step-level searches beside sampling (``--search``), compared at matched total tokens;
- ``assemble``: the results of a run from the analysis and the state;
- ``report`` and ``plots``: report.md, the PNG plots and results.json;
- ``pipeline``: the stages in order, each skipping what an earlier run already did.
"""
