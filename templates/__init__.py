"""Meetgate's jinja2 pages and static assets, shipped inside the wheel."""
