"""Meetgate: a self-hosted, hardened front door for Jitsi Meet."""

__version__ = "0.1.0"
