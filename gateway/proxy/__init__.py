"""The reverse proxy to Jitsi: path rules, HTTP and WebSocket relays, live-connection registry."""
