"""apk detector: see scanner.py."""
