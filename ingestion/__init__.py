"""The shop-facing side: everything that comes *in*.

One service (:mod:`ingestion.service`) takes identify, track and the other Segment calls — from
the HTTP API (:mod:`ingestion.api`), from ``touchpoint emit`` and from the simulator alike —
updates profiles, deduplicates, and hands events to the router (:mod:`ingestion.router`), which
starts and signals journey runs. Also here: consent withdrawals (:mod:`ingestion.consent`),
one-click unsubscribe tokens and forms (:mod:`ingestion.unsubscribe`,
:mod:`ingestion.one_click`) and provider feedback (:mod:`ingestion.sendgrid_events`).
"""
