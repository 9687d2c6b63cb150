"""One module per ``ttscale`` command, registered on the app in ``ttscale.cli.app``; commands import
nothing from each other (shared pieces live in ``ttscale.cli``)."""
