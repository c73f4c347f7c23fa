"""osrelease detector: see scanner.py."""
