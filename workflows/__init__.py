"""Deterministic code: the journey language (``workflows.language``), the compiled plan
(``workflows.plan``) and, later, the interpreter workflow.

This package's ``__init__`` imports nothing so that the Temporal workflow sandbox can load
``workflows.plan`` without pulling in YAML, Jinja2 or the file system.
"""
