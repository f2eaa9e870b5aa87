"""seqnets: recurrent networks on three sequence tasks, configured by Hydra, run by Lightning."""

__version__ = "0.1.0"
