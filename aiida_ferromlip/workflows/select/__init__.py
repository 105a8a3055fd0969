"""Stage 4 of the loop, selection: sanity screening, committee trust levels and the selectors."""
