"""dpkg detector: see scanner.py."""
