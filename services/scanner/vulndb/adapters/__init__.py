"""The vulnerability database's stores."""
