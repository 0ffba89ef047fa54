"""semicrf: exact, fast semi-Markov conditional random fields for PyTorch."""

__version__ = "0.1.0"
