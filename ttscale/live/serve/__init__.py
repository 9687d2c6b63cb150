"""The OpenAI-compatible proxy behind ``ttscale serve`` (needs the ``server`` extra: FastAPI, uvicorn).

``config`` (ServeConfig), ``requests`` (request bodies), ``options`` (a request's policy and
budget), ``responses``, ``errors`` (OpenAI-style error bodies), ``middleware`` (key, body limit,
metrics), ``metrics``; ``app`` has the :class:`~ttscale.live.serve.app.Proxy` and ``create_app``.
"""
