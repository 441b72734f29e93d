"""Presence port: who is online anywhere, across processes."""
