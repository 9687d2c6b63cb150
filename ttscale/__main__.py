from ttscale.cli.app import app

app()
