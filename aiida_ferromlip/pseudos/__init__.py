"""PBEsol pseudopotentials built offline with QE's ``ld1.x`` and installed as an aiida-pseudo family.

No Debian or PyPI package ships Ba, Zr, Hf or Bi UPFs, and nothing may be downloaded at run time, so the plugin
ships pslibrary 1.0.0's generation inputs (``pslibrary-1.0.0-pbesol/``, GPL, see its README) and generates the
UPFs on the user's machine. Two things are done by hand here because no library does them:

* ``ld1.x`` 6.7 writes PP_Q / PP_MULTIPOLES on lines of up to ~6400 characters, and ``pw.x`` 6.7 refuses lines
  over 1024 ("xmlr_opentag: severe error, line too long"): :func:`rewrap_long_lines` re-wraps numeric lines;
* the recommended cutoffs of the family are the ones ``ld1.x`` writes in each UPF header
  (``wfc_cutoff``/``rho_cutoff``, Ry), read by :func:`suggested_cutoffs`.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import tempfile

INPUTS = pathlib.Path(__file__).parent / 'pslibrary-1.0.0-pbesol'

#: pseudopotential type -> the pslibrary file tag, and the family label installed by default.
TYPES = {'paw': 'kjpaw', 'us': 'rrkjus'}
DEFAULT_TYPE = 'us'
FAMILY_LABELS = {kind: f'ferromlip/pslibrary-1.0.0/PBEsol/{kind.upper()}' for kind in TYPES}
DEFAULT_FAMILY = FAMILY_LABELS[DEFAULT_TYPE]

_MAX_LINE = 200  # well under pw.x 6.7's 1024-character limit
_PER_LINE = 4


class PseudoGenerationError(RuntimeError):
    """``ld1.x`` is missing or failed for an element."""


def available_elements() -> list[str]:
    return sorted({path.name.split('.')[0] for path in INPUTS.glob('*.in')})


def input_file(element: str, kind: str = DEFAULT_TYPE) -> pathlib.Path:
    if kind not in TYPES:
        raise ValueError(f'unknown pseudopotential type `{kind}`; choose one of {", ".join(TYPES)}')
    matches = sorted(INPUTS.glob(f'{element}.pbesol-*-{TYPES[kind]}_psl.1.0.0.in'))
    if not matches:
        raise ValueError(f'no pslibrary input for `{element}`; shipped: {", ".join(available_elements())}')
    return matches[0]


def rewrap_long_lines(text: str, max_length: int = _MAX_LINE, per_line: int = _PER_LINE) -> str:
    """Split every line longer than ``max_length`` that holds only numbers into lines of ``per_line`` numbers.

    Only whitespace changes inside numeric data blocks, which UPF v2 readers parse as free-format lists.
    Long lines that are not purely numeric (a tag with many attributes) are left alone: wrapping them could
    change the XML and none of the pslibrary files has one that long.
    """
    lines = []
    for line in text.splitlines():
        if len(line) > max_length:
            numbers = line.split()
            if all(_is_number(token) for token in numbers):
                lines.extend('  ' + '  '.join(numbers[i:i + per_line]) for i in range(0, len(numbers), per_line))
                continue
        lines.append(line)
    return '\n'.join(lines) + '\n'


def _is_number(token: str) -> bool:
    try:
        float(token.replace('D', 'E').replace('d', 'e'))
    except ValueError:
        return False
    return True


def suggested_cutoffs(upf: pathlib.Path) -> tuple[float, float]:
    """``(wavefunction, density)`` cutoffs in Ry that ``ld1.x`` recorded in the UPF header."""
    header = upf.read_text()[:20000]
    values = {}
    for key in ('wfc_cutoff', 'rho_cutoff'):
        match = re.search(rf'{key}="\s*([0-9.eEdD+-]+)"', header)
        if not match:
            raise ValueError(f'{upf.name}: no `{key}` in the UPF header')
        values[key] = float(match.group(1))
    return values['wfc_cutoff'], values['rho_cutoff']


def generate(target: pathlib.Path, kind: str = DEFAULT_TYPE, elements: list[str] | None = None,
             ld1: str = 'ld1.x') -> dict[str, pathlib.Path]:
    """Generate the UPFs of ``elements`` (all shipped ones by default) into ``target``; existing files are kept.

    Returns ``{element: path}``. Each element takes about a second.
    """
    executable = shutil.which(ld1)
    if executable is None:
        raise PseudoGenerationError(f'`{ld1}` not found: install Quantum ESPRESSO (Debian: apt install quantum-espresso)')
    target = pathlib.Path(target)
    target.mkdir(parents=True, exist_ok=True)
    result = {}
    for element in elements or available_elements():
        source = input_file(element, kind)
        upf = target / source.name.replace('.in', '.UPF')
        if not upf.exists():
            _run_ld1(executable, source, upf)
        result[element] = upf
    return result


def _run_ld1(executable: str, source: pathlib.Path, upf: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory(prefix='ld1_') as workdir:
        process = subprocess.run([executable], stdin=source.open(), cwd=workdir, capture_output=True, text=True,
                                 check=False)
        written = pathlib.Path(workdir) / upf.name
        if process.returncode != 0 or not written.exists():
            tail = '\n'.join((process.stdout + process.stderr).splitlines()[-15:])
            raise PseudoGenerationError(f'ld1.x failed for {source.name} (exit {process.returncode}):\n{tail}')
        partial = upf.with_suffix('.UPF.partial')
        partial.write_text(rewrap_long_lines(written.read_text()))
        partial.replace(upf)  # never leave a half-written UPF that a later run would take as done


def install_family(directory: pathlib.Path | None = None, kind: str = DEFAULT_TYPE, label: str | None = None,
                   ld1: str = 'ld1.x'):
    """Generate (if needed) and install the PBEsol family with its recommended cutoffs; idempotent.

    Returns the ``CutoffsPseudoPotentialFamily``. A family with the same label is reused as it is.
    """
    from aiida.common.exceptions import NotExistent
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    label = label or FAMILY_LABELS[kind]
    try:
        return CutoffsPseudoPotentialFamily.collection.get(label=label)
    except NotExistent:
        pass
    if directory is None:
        directory = pathlib.Path(tempfile.mkdtemp(prefix='ferromlip_pseudos_'))
    upfs = generate(directory, kind, ld1=ld1)
    with tempfile.TemporaryDirectory(prefix='family_') as staging:
        for path in upfs.values():  # only this type's files, whatever else lies in `directory`
            shutil.copy(path, staging)
        family = CutoffsPseudoPotentialFamily.create_from_folder(pathlib.Path(staging), label, pseudo_type=UpfData)
    cutoffs = {}
    for element, path in upfs.items():
        wfc, rho = suggested_cutoffs(path)
        cutoffs[element] = {'cutoff_wfc': wfc, 'cutoff_rho': rho}
    family.set_cutoffs(cutoffs, 'normal', unit='Ry')
    family.description = (f'pslibrary 1.0.0 PBEsol {kind.upper()} pseudopotentials generated with ld1.x by '
                          f'aiida-ferromlip; cutoffs = the ld1.x suggestions in each UPF header')
    return family
