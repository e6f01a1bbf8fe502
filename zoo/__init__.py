"""rnn-stm-zoo: a model zoo of RNNs trained on a delayed cue-discrimination task (Kurtkaya, Dinc et al. 2025)."""

from .version import __version__

__all__ = ["load_zoo", "Zoo", "Network", "__version__"]


def __getattr__(name):  # lazy: `import zoo` (and every CLI call) stays cheap until the loader is used
    if name in ("load_zoo", "Zoo", "Network"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
