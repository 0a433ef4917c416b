"""Time travel: ``touchpoint simulate`` (one customer or a population) and journey tests
(``touchpoint test``), on Temporal's time-skipping server with the production router,
interpreter, policies and rendering — only the last hop to a provider is recorded."""
