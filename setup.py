"""The one part of the packaging pyproject.toml cannot say: the package list.

``conf/`` stays at the top of the repository, where a user reads and edits it, and ships
inside the package as ``seqnets.conf`` (its sub-folders as ``seqnets.conf.<group>``), so an
installed seqnets finds its configs with Hydra's ``pkg://seqnets.conf`` from any folder; an
editable install maps the same name onto the checkout's ``conf/``. pyproject's automatic
discovery cannot map a folder outside ``src/`` into the package, hence this file; everything
else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONF = "seqnets.conf"
GROUPS = find_namespace_packages("conf", exclude=["*__pycache__*"])

setup(
    packages=[
        *find_packages("src"),
        *find_namespace_packages("src", include=["hydra_plugins.*"]),  # the grouped launcher
        CONF,
        *(f"{CONF}.{group}" for group in GROUPS),
    ],
    package_dir={"": "src", CONF: "conf"},
)
