"""PromptLooper: an experimentation platform for LLM applications.

Sweeps, agent variants, online A/B experiments and LoRA fine-tuning behind one REST API, a
Python SDK, a CLI and a web UI.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
