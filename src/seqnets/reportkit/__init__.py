"""What a report section is written with: the report's public API for tasks (``document``,
``stats``, ``settings``, ``references``, and ``generic``, the default section). It sits below
``seqnets.tasks``; the report itself sits above and asks each task for its section.
"""
