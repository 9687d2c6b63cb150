"""The OpenAI-compatible proxy behind ``ttscale serve`` (needs the ``server`` extra: FastAPI, uvicorn)."""
