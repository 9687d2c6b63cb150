"""Live solving: questions answered against a model server or engine as they come.

``budget`` (what one question may cost, :class:`~ttscale.live.budget.Budget`), ``solution``
(a :class:`~ttscale.live.solution.Question` and its ``Solution``), ``solve`` (the round loop that
samples, stops and chooses), ``samplers`` (the backends it runs on), ``api`` (the Python API,
``TTScale``) and ``serve/`` (the OpenAI-compatible proxy).
"""
