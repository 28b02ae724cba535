"""The ways in: the daemon, the one-shot upload, the CLI and its control socket, doctor, init, service files."""
