"""Settings the papers state, read back from the protocols (docs/fidelity.md lists each with its source)."""

from aiida_ferromlip.calculations.gap_fit import GapFitCalculation
from aiida_ferromlip.calculations.sample import SampleCalculation


def test_minimalist_sampling_is_the_papers_ramp():
    """Minimalist-MLIP paper: 'running for 10000 steps of 2 fs, with a linear temperature ramp from 10 K to 300 K'."""
    parameters = SampleCalculation.get_protocol_inputs('minimalist_ramp')['parameters']
    assert parameters['mode'] == 'ramp' and parameters['steps'] == 10000 and parameters['timestep_fs'] == 2.0
    assert (parameters['t_start'], parameters['t_end']) == (10.0, 300.0)


def test_batio3_gap_gap_is_the_papers_soap_kernel():
    """BaTiO3 SOAP-GAP paper: SOAP power spectrum with a 5.5 Å cutoff, kernel (scalar product)^zeta with zeta = 4."""
    descriptors = GapFitCalculation.get_protocol_inputs('batio3_gap')['parameters']['descriptors']
    soap = [d for d in descriptors if d['type'] == 'soap']
    assert soap and all(d['cutoff'] == 5.5 and d['zeta'] == 4 and d['covariance_type'] == 'dot_product' for d in soap)
