"""The WebSocket transport: handshake, frames, sessions, fan-out, heartbeats."""
