"""What operators run and ask: the worker's Temporal workers (:mod:`ops.workers`), the API
process (:mod:`ops.api_server`), ``touchpoint dev`` (:mod:`ops.dev`), and the commands that
inspect and steer runs, messages, suppressions and previews (:mod:`ops.operations`,
:mod:`ops.messaging`, :mod:`ops.suppressions`); :mod:`ops.exits` maps errors to exit codes."""
