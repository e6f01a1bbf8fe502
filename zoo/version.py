"""The package version (its one home; ``zoo.__version__`` re-exports it)."""

__version__ = "0.2.0"
