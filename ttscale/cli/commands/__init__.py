"""CLI commands that live in their own modules (registered on the app in ``ttscale.cli.app``)."""
