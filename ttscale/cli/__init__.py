"""The ``ttscale`` command: the typer app (``app``), console helpers (errors as one line, progress
bars), tables and plots (``report``) and one module per command (``commands``). Nothing outside this
package imports from it.
"""
