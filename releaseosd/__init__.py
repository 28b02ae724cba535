"""releaseosd: watches DAW export folders and releases finished tracks to SoundCloud."""

__version__ = "0.1.0"
