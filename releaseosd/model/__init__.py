"""What a track is and where it is kept: config, sidecar, track record, states, store."""
