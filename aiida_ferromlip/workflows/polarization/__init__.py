"""The polarization model (SA-GPR on Berry-phase labels) as a work chain."""
