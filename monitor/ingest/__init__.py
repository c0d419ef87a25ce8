"""Ingest: pull camera streams, keep a ring of encoded packets, sample frames for detection."""
