"""seqnets' Hydra launcher: ``hydra/launcher=grouped`` (see ``seqnets.grouping``)."""
