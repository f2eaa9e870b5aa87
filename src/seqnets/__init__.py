"""seqnets: recurrent networks on four sequence tasks, configured by Hydra, run by Lightning."""

from pathlib import Path

__version__ = "0.1.0"

# The config tree at the top of the repository (the package is installed editable). An
# absolute path, so the entry points find it however they are started (``python -m``, or
# imported by tests and the report).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
