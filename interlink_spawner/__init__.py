"""A JupyterHub spawner for interLink nodes (``c.JupyterHub.spawner_class = "interlink"``)."""

from .spawner import InterLinkSpawner

__all__ = ["InterLinkSpawner"]
