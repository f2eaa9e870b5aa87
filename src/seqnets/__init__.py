"""seqnets: recurrent networks on four sequence tasks, configured by Hydra, run by Lightning."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__version__ = "0.1.0"

# The config tree: ``conf/`` at the top of the repository, installed inside the package as
# ``seqnets.conf`` (setup.py), so that the entry points find it the same way from a checkout
# (editable install), from a wheel and from any working directory: Hydra's ``pkg://`` search
# path. A user's own config folder is added with ``hydra.searchpath=[file://<folder>]``.
CONFIG_MODULE = "seqnets.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def configs() -> Traversable:
    """The installed config tree, for code that lists configs rather than composing them (the
    config groups, a report section's experiments)."""
    return files(CONFIG_MODULE)
