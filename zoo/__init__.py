"""rnn-stm-zoo: a model zoo of RNNs trained on a delayed cue-discrimination task (Kurtkaya, Dinc et al. 2025)."""

__version__ = "0.1.0"

from .api import Network, Zoo, load_zoo  # noqa: E402

__all__ = ["load_zoo", "Zoo", "Network", "__version__"]
