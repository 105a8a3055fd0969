"""Parsers of aiida-ferromlip, one per CalcJob."""
