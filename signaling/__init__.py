"""WebSocket signaling, lesson state and the HTTP surface of the shared classroom."""
