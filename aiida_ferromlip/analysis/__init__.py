"""Pure functions on numpy/ASE (no AiiDA imports): features, errors, plots."""
