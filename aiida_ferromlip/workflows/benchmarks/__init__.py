"""Workflows that judge a potential against a reference: seed 000's tests."""
