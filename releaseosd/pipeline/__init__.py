"""The track's journey, in order: watch → stability → ingest (build: see media/) → schedule → upload → publish; retry decides when to try again, login_watch looks ahead."""
