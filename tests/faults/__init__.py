"""Fault tests: real server processes killed and cut off, as a bad day would (issue 12)."""
