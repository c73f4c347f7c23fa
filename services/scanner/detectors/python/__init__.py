"""python detector: see scanner.py."""
