"""Programs that CalcJobs of aiida-ferromlip execute on the remote computer (no AiiDA imports here)."""
