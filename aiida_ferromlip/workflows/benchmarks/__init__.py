"""Workflows that judge a potential against a reference: the minimalist paper's tests."""
