"""ttscale: inference-time compute optimizer for LLM reasoning."""

__version__ = "0.1.0"
