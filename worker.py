"""Temporal worker entry point: connect, register the journey workflow and activities, run.

The interpreter workflow and the worker arrive with the runtime issue; this module is the
design card's fixed entry point for them.
"""

if __name__ == "__main__":
    raise SystemExit("the worker arrives with the journey runtime; nothing to run yet")
