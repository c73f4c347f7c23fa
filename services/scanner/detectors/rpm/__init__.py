"""rpm detector: see scanner.py."""
