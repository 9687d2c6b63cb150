"""The ``ttscale`` command: the typer app (``app``), console helpers (errors as one line, progress
bars, deprecation notes), what the commands print (``report``: tables and plots), the options shared
by the sampling commands (``sampling_options``) and one module per command (``commands``). The
commands parse options and print; the work is done by the layers below (``ttscale.offline`` for
eval, plan and simulate). Nothing outside this package imports from it.
"""
