"""CalcJobs of aiida-ferromlip: every heavy computation runs as one, so a daemon can send it to a cluster."""
