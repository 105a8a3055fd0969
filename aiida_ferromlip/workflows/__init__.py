"""WorkChains of aiida-ferromlip, one subpackage per part of the active-learning loop (imports point down the list):

* ``dft/`` — labelling one frame at a time with real DFT: the per-frame base, Quantum ESPRESSO (``qe``), VASP
  (``vasp``), VASP's own on-the-fly learning, Berry phases; ``restart.py`` — restart wrappers for the plugin's own
  jobs (gap_fit, NequIP/Allegro training, MD);
* ``fit/`` — stage 2, fitting: the model registry (``models``: gap, nequip behind one contract);
* ``label/`` — stage 1, labelling: ``LabelWorkChain`` (``base``) and the labeller registry (``engines``:
  reference model, QE, VASP behind one contract);
* ``select/`` — stage 4, selection: screening, committee trust levels, the selectors (``candidates``);
* ``polarization/`` — the polarization model fitted to Berry-phase labels (``model``);
* ``benchmarks/`` — judging a potential against its labeller: the physics card and the papers' tests (phonons,
  polymorphs, switching path, vortex texture, interpolation, phase sequence, dielectric response);
* ``loop/`` — the loop itself (``active_learning``: label -> fit -> sample -> select -> judge) and what a user does
  after it (``after_loop``: overview, export, continue).

The fit and MD jobs (stages 2 and 3) are CalcJobs (``calculations/``), run by the loop in the wrappers of
``restart.py``.
"""
