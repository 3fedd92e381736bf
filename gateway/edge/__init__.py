"""The request edge: what stands between a client's socket and the gate's application."""
