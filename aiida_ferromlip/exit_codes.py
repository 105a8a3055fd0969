"""Every exit code of the plugin's processes, in one table: a number means one thing everywhere.

Ranges (docs/architecture.md prints this table):

* ``3xx`` — a job (CalcJob) failed: what its parser found;
* ``4xx`` — a work chain failed: a process it called failed, or its inputs turned out unusable at run time;
* ``5xx`` — a work chain finished without converging: its outputs are there, the message says why it stopped.

(``2xx`` is kept for inputs refused at run time; bad inputs are refused by port validators before anything
runs, so no process needs one today.) A process declares the codes it uses with :func:`declare`; the number and
the message come from :data:`EXIT_CODES`, so no two processes give one number two meanings. The numbers AiiDA's
``BaseRestartWorkChain`` declares itself (:data:`AIIDA_RESTART_CODES`, used by the plugin's restart wrappers) are
left out of the plugin's own. No AiiDA imports.
"""

from __future__ import annotations

#: What ``aiida.engine.BaseRestartWorkChain`` declares (status -> label): kept free in the table below.
AIIDA_RESTART_CODES = {301: 'ERROR_SUB_PROCESS_EXCEPTED', 302: 'ERROR_SUB_PROCESS_KILLED',
                       401: 'ERROR_MAXIMUM_ITERATIONS_EXCEEDED', 402: 'ERROR_UNHANDLED_FAILURE'}

#: label -> (status, message); messages are ``str.format`` templates filled by the process.
EXIT_CODES: dict[str, tuple[int, str]] = {
    # --- 3xx: jobs -------------------------------------------------------------------------------------------
    'ERROR_OUTPUT_MISSING': (300, 'The program wrote no {filename}.'),
    'ERROR_OUTPUT_CORRUPT': (303, 'The output could not be read: {error}.'),
    'ERROR_NO_FRAME_DONE': (310, 'None of the {num} structures could be done: {failures}'),
    'ERROR_TASK_FAILED': (311, 'The task failed: {error}'),
    'ERROR_MEMORY_BUDGET': (320, 'gap_fit would need {need:.1f} GiB even with no virials, over the {budget:.1f} GiB '
                                 'budget: lower n_max/l_max, use diagonal_radial, fit fewer frames or raise '
                                 '`max_memory_gb`.'),
    'ERROR_OUT_OF_MEMORY': (321, 'gap_fit ran out of memory: {detail}'),
    'ERROR_SINGULAR_MATRIX': (322, 'gap_fit could not factorise its covariance matrix (singular or not positive '
                                   'definite): raise default_sigma or reduce duplicate/sparse points. {detail}'),
    'ERROR_MISSING_SPECIES': (323, 'gap_fit found a species it cannot handle: {detail}'),
    'ERROR_BAD_PARAMETERS': (324, 'gap_fit rejected its parameters: {detail}'),
    'ERROR_GAP_FIT_FAILED': (329, 'gap_fit failed (return code {code}): {detail}'),
    'ERROR_NAN_LOSS': (330, 'Training diverged: the loss became NaN at epoch {epoch}. Lower the learning rate or '
                            'check the labels.'),
    'ERROR_TRAINING_FAILED': (331, 'nequip-train failed: {detail}'),
    'ERROR_COMPILE_FAILED': (332, 'nequip-compile failed (a C compiler is needed for AOTInductor): {detail}'),
    'ERROR_MD_FAILED': (340, 'The MD failed: {error}'),
    'ERROR_CLIENT_LOST': (341, 'An i-PI socket client was lost: {error}'),
    'ERROR_MISSING_STRESS': (342, 'The potential gave no stress: {error}'),
    'ERROR_MD_BLOW_UP': (343, 'The MD blew up: {error}'),
    # --- 4xx: work chains ------------------------------------------------------------------------------------
    'ERROR_NO_FRAME_LABELLED': (403, 'No frame could be labelled: {failures}'),
    'ERROR_LABELLING_FAILED': (404, 'Labelling failed: {detail}'),
    'ERROR_FIT_FAILED': (405, 'The fit failed: {detail}'),
    'ERROR_SAMPLING_FAILED': (406, 'Every sampling run failed: {detail}'),
    'ERROR_CARD_FAILED': (407, 'The physics card could not be computed: {detail}'),
    'ERROR_REFERENCE_FAILED': (410, 'The reference labeller failed: {detail}'),
    'ERROR_POTENTIAL_JOB_FAILED': (411, 'A job of the potential failed: {detail}'),
    'ERROR_MD_JOB_FAILED': (412, 'The MD job failed: {detail}'),
    'ERROR_REFERENCE_EOS_FAILED': (413, "The labeller's equation of state could not be computed: {detail}"),
    'ERROR_TEST_SET_FAILED': (414, 'The test set could not be labelled: {detail}'),
    'ERROR_REFERENCE_PHASE_FAILED': (420, 'The pw.x relaxation of the zero-of-energy phase `{phase}` failed; no '
                                          'table'),
    'ERROR_TOO_FEW_REFERENCE_RELAXATIONS': (421, 'Fewer than two pw.x relaxations finished ({failed} failed); no '
                                                 'table'),
    'ERROR_RELAXATION_JOB_FAILED': (422, 'The relaxation job of the {side} failed: {detail}'),
    'ERROR_SCF_FAILED': (430, 'The SCF PwBaseWorkChain<{pk}> failed: {why}'),
    'ERROR_METALLIC': (431, 'The frame is metallic: the gap between the highest occupied and lowest empty band is '
                            '{gap:.3f} eV (< {minimum} eV) over the SCF k-mesh; a Berry-phase polarization is only '
                            'defined for an insulator'),
    'ERROR_BERRY_FAILED': (432, 'The Berry-phase pw.x run along gdir {gdir} failed: {why}'),
    'ERROR_NO_DIPOLES': (433, 'No frame has a clear branch: {flagged}'),
    'ERROR_STAGE_FAILED': (440, 'The on-the-fly MD of stage {stage} ({process}) failed: {message}'),
    'ERROR_NO_ML_AB': (441, 'Stage {stage} finished but retrieved no ML_ABN: was VASP built with machine learning '
                            '(VASP >= 6.3)?'),
    # --- 5xx: finished, not converged ------------------------------------------------------------------------
    'STOPPED_BUDGET_EXHAUSTED': (501, 'Not converged: stopped because {reason}. The outputs hold the potential and '
                                      'TrainingSet reached.'),
}

#: Numbers of codes renumbered when this table was introduced (old -> new), for reading older reports.
RENUMBERED = {
    'GapFitCalculation': {310: 320, 311: 321, 312: 322, 313: 323, 314: 324, 319: 329},
    'NequipTrainCalculation': {320: 330, 321: 331, 322: 332},
    'SampleCalculation': {310: 340, 311: 341, 312: 342},
    'ReferenceLabelCalculation': {301: 303},
    'AtomsTaskCalculation': {301: 303, 310: 311, 311: 310},
    'LabelWorkChain, QeLabelWorkChain, VaspLabelWorkChain, BerryPhaseWorkChain (no frame labelled)': {401: 403},
    'ActiveLearningWorkChain': {401: 404, 402: 405, 403: 406, 404: 407, 410: 501},
    'PhysicsCardWorkChain': {401: 413, 402: 411, 403: 414},
    'benchmarks (phonons, interpolation, switching)': {401: 410},
    'benchmarks with MD (phase sequence, dielectric)': {410: 412},
    'PolymorphRankingWorkChain': {410: 420, 411: 421, 412: 422},
    'PwBerryPhaseWorkChain': {410: 430, 420: 431, 430: 432},
    'BerryPhaseWorkChain': {402: 410, 403: 433},
    'VaspOnTheFlyWorkChain': {420: 440, 421: 441},
}


def declare(spec, *labels: str) -> None:
    """Declare the exit codes ``labels`` on a process ``spec`` with the table's numbers and messages."""
    for label in labels:
        status, message = EXIT_CODES[label]
        spec.exit_code(status, label, message=message)


def _check_unique() -> None:
    statuses = [status for status, _ in EXIT_CODES.values()] + list(AIIDA_RESTART_CODES)
    duplicated = sorted({s for s in statuses if statuses.count(s) > 1})
    if duplicated:
        raise RuntimeError(f'exit codes used twice: {duplicated}')


_check_unique()
