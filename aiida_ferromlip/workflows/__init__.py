"""WorkChains of aiida-ferromlip: one module per stage of the active-learning loop."""
