"""The evidence log: what was done to a meeting, hash-chained and signed, exported and verified
without the attendees in it (docs/evidence.md)."""
