"""Hosts in command: the roster and the host actions (revoke, ban, lock, lockdown, move)."""
