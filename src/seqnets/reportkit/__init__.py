"""What a report section is written with: the report's public API for tasks.

A task's ``report.py`` (and the default section, ``generic``) builds its part of the report
from these: ``document`` (Markdown, tables, figures), ``stats`` (one row per experiment, its
seeds' scores), ``settings`` (what sets runs apart), ``references`` (published numbers). The
package sits below ``seqnets.tasks``; the report itself (``seqnets.report``: planning,
running, rendering) sits above and asks each task for its section, so imports go one way.
"""
