"""Redis-backed state: incidents, the event stream, camera status."""
