"""Sampling: the sampler protocol (``sampler``), its backends (vLLM, OpenAI-compatible HTTP,
transformers, Ray, replay) and the driver that fills a bank resumably (``driver``).
"""
