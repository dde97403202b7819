"""ssm: reproduce the ablations of the diagonal state space model papers from one command."""

__version__ = "0.1.0"
