"""The project's configuration: ``touchpoint.yaml`` (:mod:`config.project`), the deployment
settings from the environment and the connection to Temporal (:mod:`config.settings`), and
the errors an operator can fix (:mod:`config.errors`)."""
