"""jaxemb: adapt small pre-trained text encoders to healthcare text, in JAX/Flax, and measure what changed."""

from jaxemb.cli import set_environment_defaults as _set_environment_defaults

_set_environment_defaults(library=True)  # quiet transformers; the CLIs add their own (jaxemb/cli.py)

__version__ = "0.1.0"


def __getattr__(name):
  # Lazy so that `import jaxemb.data` does not pay for jax/flax start-up.
  if name == "Encoder":
    from jaxemb.models.api import Encoder
    return Encoder
  raise AttributeError(name)


__all__ = ["Encoder", "__version__"]
