"""village-monitor: village cameras -> people counts -> gathering rules -> loudspeaker announcements."""

__version__ = "0.1.0"
