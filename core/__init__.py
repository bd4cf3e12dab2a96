"""Plumbing every app uses, importing none of them."""
