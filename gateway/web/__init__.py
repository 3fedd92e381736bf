"""Meetgate's own pages: routes, template set-up, error rendering and security headers."""
