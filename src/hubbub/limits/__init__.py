"""Limits per user and per client address: send rate, connections, connect rate."""
