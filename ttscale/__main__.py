from ttscale.cli import app

app()
