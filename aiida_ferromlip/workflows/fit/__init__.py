"""Stage 2 of the loop, fitting: the model families behind one contract (``models``); the fit jobs are CalcJobs
(``calculations/gap_fit.py``, ``calculations/nequip_train.py``) run in the wrappers of ``workflows/restart.py``."""
