"""npm detector: see scanner.py."""
