"""Actions at the edges: snapshots, clips, announcements. Everything slow runs off the frame path."""
