"""Listeners: what reacts to the pipeline's events (see releaseosd/model/events.py). Each module here
is one listener; the daemon subscribes each with one line."""
