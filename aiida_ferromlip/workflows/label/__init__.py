"""Stage 1 of the loop, labelling: ``LabelWorkChain`` and the labeller registry it builds its namespaces from."""
