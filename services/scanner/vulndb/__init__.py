"""The vulnerability database: OSV records imported, stored and looked up for matching."""
