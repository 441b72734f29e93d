"""Persistence port: ``base.Store`` and its implementations."""
