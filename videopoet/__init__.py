"""videopoet: an open VideoPoet-style multimodal LLM training system."""

__version__ = "0.1.0"
