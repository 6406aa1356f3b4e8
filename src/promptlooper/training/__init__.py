"""Fine-tuning: a model registry, training runs and Tinker-style LoRA primitives.

Everything that needs PyTorch lives in ``backend/`` and is imported only when a run is used, so
the API and the CLI start without loading it.
"""
