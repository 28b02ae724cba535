"""The local dashboard the daemon serves on loopback: every track, its artwork, preview and
countdown, and the producer's actions, live from the event bus (see docs/architecture.md)."""
