"""The product's one HTTP stack, below everything that serves HTTP (the control socket, the
dashboard): see served.py."""
