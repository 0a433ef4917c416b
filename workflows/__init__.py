"""Only what the workflow sandbox runs: the compiled plan (:mod:`workflows.plan`), the run's
models (:mod:`workflows.models`), the interpreter (:mod:`workflows.journey`), timing
(:mod:`workflows.timing`, :mod:`workflows.durations`), expression evaluation without file access
(:mod:`workflows.evaluation`, :mod:`workflows.jinja_sandbox`) and the channel registry
(:mod:`workflows.channels`). No YAML, no files, no network, no database.

This package's ``__init__`` imports nothing, so the sandbox can load one module without the rest.
"""
