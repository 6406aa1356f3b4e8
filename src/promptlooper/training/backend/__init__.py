"""The only place that imports torch, transformers and peft: ``TrainingBackend`` itself stays
import-light and loads ``engine`` the first time a model is needed."""

from promptlooper.training.backend.host import TrainingBackend

__all__ = ["TrainingBackend"]
