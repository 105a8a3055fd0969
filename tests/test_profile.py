"""The loop profile's interval arithmetic and CPU sampler (benchmarks/loop_profile.py)."""

import time

import pytest

from aiida_ferromlip.analysis.profile import (
    CpuSampler, StackSampler, covered, gaps, intersection, iteration_of, iteration_spans, mean_busy, merged,
    time_by_label, what_it_does,
)


def test_overlapping_programs_are_counted_once():
    # two jobs overlapping by 2 s, a third after a gap: 10 s with some program running, not 12
    jobs = [(0.0, 6.0), (4.0, 8.0), (10.0, 12.0)]
    assert merged(jobs) == [(0.0, 8.0), (10.0, 12.0)]
    assert covered(jobs) == pytest.approx(10.0)
    # clipped to the stage's lifetime [5, 11]: 3 s + 1 s
    assert covered(intersection(jobs, [(5.0, 11.0)])) == pytest.approx(4.0)
    assert covered([]) == 0.0 and merged([(3.0, 3.0)]) == []


def test_the_gaps_are_the_loops_time_no_program_covers():
    jobs = [(0.0, 6.0), (4.0, 8.0), (10.0, 12.0)]
    # the loop lived [-1, 15]: nothing ran before 0, between 8 and 10, after 12
    assert gaps(jobs, (-1.0, 15.0)) == [(-1.0, 0.0), (8.0, 10.0), (12.0, 15.0)]
    # a window inside the jobs has no gap; one that ends inside a gap ends the gap there
    assert gaps(jobs, (1.0, 5.0)) == [] and gaps(jobs, (5.0, 9.0)) == [(8.0, 9.0)]
    # the gaps and the programs fill the window exactly
    assert covered(gaps(jobs, (-1.0, 15.0))) + covered(intersection(jobs, [(-1.0, 15.0)])) == pytest.approx(16.0)


def test_an_iteration_spans_its_own_processes_only():
    children = [('label_seed', 0.0, 30.0), ('start_at_equilibrium', 1.0, 2.0),
                ('fit_000', 30.0, 90.0), ('fit_000_explorer', 30.0, 50.0), ('sample_000_R3m', 50.0, 200.0),
                ('card_000', 91.0, 260.0), ('label_000_card', 262.0, 280.0), ('merge_000', 281.0, 282.0),
                ('fit_001', 282.0, 340.0), ('sample_001_Pm_3m', 341.0, 400.0), ('summary', 400.0, 401.0)]
    assert iteration_of('sample_012_Pm_3m') == 12 and iteration_of('label_000_card') == 0
    assert iteration_of('label_seed') is None and iteration_of('summary') is None and iteration_of('fit_0001') is None
    # iteration 0 runs from its fit's start to its last merge (the seed labels before it are not part of it)
    assert iteration_spans(children) == {0: (30.0, 282.0), 1: (282.0, 400.0)}


def test_cpu_samples_average_inside_the_windows():
    samples = [(1.0, 0.2), (2.0, 1.0), (3.0, 1.0), (9.0, 0.0)]
    assert mean_busy(samples, [(1.5, 3.5)]) == pytest.approx(1.0)
    assert mean_busy(samples, [(0.0, 2.5), (8.0, 10.0)]) == pytest.approx(0.4)
    assert mean_busy(samples, [(4.0, 5.0)]) is None


def test_the_sampler_sees_a_busy_core():
    """One core spinning for 1.5 s on a machine of n cores: at least ~1/n of the machine busy on average."""
    import os

    with CpuSampler(interval=0.25) as sampler:
        end = time.time() + 1.5
        while time.time() < end:
            pass
    values = [busy for _, busy in sampler.samples]
    assert len(values) >= 4 and all(0.0 <= v <= 1.0 for v in values)
    assert sum(values) / len(values) > 0.7 / (os.cpu_count() or 1)


def test_the_engines_stack_is_labelled_by_its_step_and_what_it_called():
    step = ('/x/aiida_ferromlip/workflows/loop/active_learning.py', 'explore')
    card = ('/x/aiida_ferromlip/workflows/benchmarks/physics_card.py', 'card_structures')
    engine = ('/x/aiida/engine/processes/calcjobs/tasks.py', 'task_upload_job')
    loop = [('/x/asyncio/base_events.py', 'run_forever')]
    assert what_it_does(loop + [('/usr/lib/python3.11/selectors.py', 'select')]) == 'idle'
    assert what_it_does(loop + [step, card, ('/x/sqlalchemy/orm/session.py', 'commit')]) == \
        'explore > card_structures (database)'
    assert what_it_does(loop + [engine, ('/x/shutil.py', 'copyfile')]) == 'aiida: task_upload_job'
    # the package's runner making a process inside a step is that step's submission, not a step of its own
    submit = ('/x/aiida_ferromlip/workflows/loop/active_learning.py', '_submit_card')
    runner = ('/x/aiida_ferromlip/launch.py', 'instantiate_process')
    created = ('/x/aiida/engine/processes/process.py', '_setup_db_record')
    assert what_it_does(loop + [step, submit, runner, created]) == 'explore > _submit_card'
    assert what_it_does(loop + [runner, created]) == 'aiida: _setup_db_record'


def test_the_stack_sampler_sees_what_the_thread_is_doing():
    def spin_here(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    with StackSampler(interval=0.02) as sampler:
        begin = time.time()
        spin_here(0.6)
        end = time.time()
        time.sleep(0.3)
    rows = dict(time_by_label(sampler.samples, [(begin, end)], sampler.interval))
    # ~30 samples in the spin, nearly all of them in spin_here (a sample or two may land at its edges)
    assert rows.get('test_profile.py: spin_here', 0.0) >= 0.8 * sum(rows.values()) and sum(rows.values()) >= 0.3
