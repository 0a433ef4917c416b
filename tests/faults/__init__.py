"""Fault tests on the real stack: crashes, restarts, outages and fuzzing (issue 7)."""
