"""Live solving: one question at a time against a model server. The round loop that samples,
stops and chooses (``solve``), the Python API (``api.TTScale``) and the OpenAI-compatible proxy
(``serve``).
"""
