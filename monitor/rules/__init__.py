"""Rules: pure state machines fed with timestamped observations, emitting incident transitions."""
