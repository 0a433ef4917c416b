"""The journey language: YAML in, a validated and compiled plan (or a list of problems) out.

Runs before anything runs, never inside a workflow. The modules, in the order data flows:
:mod:`language.yamlsource` (YAML with line numbers), :mod:`language.fields` and
:mod:`language.authoring` (what a marketer writes), :mod:`language.repair` (stand-ins for what
the schema rejects, so the other checks still run), :mod:`language.analysis` (what an
expression or template reads, and what the sandbox would refuse), :mod:`language.expressions`
(checks of Jinja expressions), :mod:`language.templates` (the template catalog),
:mod:`language.template_env` and :mod:`language.samples` (webhook templates rendered with sample
data), :mod:`language.policies` (a journey's delivery policies and topics, checked against
``touchpoint.yaml`` and folded into each send), :mod:`language.compiler` (authoring model →
plan, and what each step and send may read), :mod:`language.validator` (every problem of a
project at once: ``validate``, ``require_valid``), :mod:`language.diagram` (Mermaid, DOT) and
:mod:`language.schema`.

This ``__init__`` imports nothing, so that :mod:`config.project` can use the field types
without loading the compiler.
"""
