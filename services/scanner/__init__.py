"""Vulnerability scanning: layer inventory, OSV-based matching, scan reports."""
