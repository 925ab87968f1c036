import pytest

from memla_core.models import load_model


@pytest.fixture(scope="session")
def real_lm():
    """Gemma 3 270M through the real path: GGUF package → one-time conversion → safetensors."""
    return load_model()
