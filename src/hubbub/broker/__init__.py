"""Notification port: carries events between processes, never the only copy."""
