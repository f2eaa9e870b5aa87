"""The report: ``python -m seqnets.report`` plans each section's runs, trains what is missing
(``plan``) and renders every table and figure from the run directories (``render``: one
section per task, which the task writes with ``seqnets.reportkit``)."""
