"""The config tree, installed as the package ``seqnets.conf`` (see setup.py).

Hydra finds configs in a package only when it holds an ``__init__.py``; the entry points
name it ``pkg://seqnets.conf``. Nothing here runs: the YAML files are the content.
"""
