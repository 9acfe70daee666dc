"""Offline dialogue data: the record schema (``records``), the imagination engine, hindsight."""
