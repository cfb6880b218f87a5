"""jaxemb: adapt small pre-trained text encoders to healthcare text, in JAX/Flax, and measure what changed."""

import os as _os

# transformers is used for tokenizers and configs only; its "PyTorch was not found" notice is noise here.
_os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

__version__ = "0.1.0"


def __getattr__(name):
  # Lazy so that `import jaxemb.data` does not pay for jax/flax start-up.
  if name == "Encoder":
    from jaxemb.models.api import Encoder
    return Encoder
  raise AttributeError(name)


__all__ = ["Encoder", "__version__"]
