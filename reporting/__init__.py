"""Dashboards, KPIs and the read API: the top of the house, reading everything below it."""
