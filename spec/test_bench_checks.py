"""`batchfeed bench`'s judgement of a run: targets within the noise margin, impossible ratios
flagged as a disturbed run, and `--check`'s exit status. Synthetic measurements: what is
specified is the judgement, not this machine's speed."""

import json
import re

import pytest

from batchfeed import bench, throughput
from batchfeed.bench import format_table
from batchfeed.targets import NOISE_MARGIN, check_failures, disturbed
from batchfeed.throughput import Measurement

N, F, B = 1000, 3, 32


def _m(rival: str, seconds: float, group: str = "epoch", features: int = F, batch_size: int = B) -> Measurement:
    labels = throughput.TRAINING_RIVALS if group == "training" else throughput.RIVALS
    return Measurement(group, rival, labels[rival], N, features, batch_size, "cpu", N * (features + 2) * 4, N, [seconds])


def _epoch(tensorloader: float, dataloader: float = 1.0, bound: float = 0.01, copy: float = 0.001) -> list[Measurement]:
    return [_m("permute_slice", bound), _m("memcpy", copy), _m("dataloader", dataloader), _m("tensorloader", tensorloader)]


def test_a_dataloader_faster_than_permute_and_slice_marks_the_run_disturbed():
    """DataLoader does strictly more work than permute + slice: faster beyond the margin is impossible, and said so."""
    fine = _epoch(0.01, dataloader=0.01 * (1 + NOISE_MARGIN) ** -1 * 1.01)  # within the margin
    broken = [_m("permute_slice", 0.01, "training"), _m("dataloader", 0.01 / 2.83, "training")]
    assert disturbed(fine) == []
    [line] = disturbed(broken)
    assert "2.83x" in line and "training" in line
    table = format_table(broken)
    assert "DISTURBED RUN" in table and "2.83x" in table
    assert any("disturbed run" in f for f in check_failures(broken))


@pytest.mark.parametrize(("shortfall", "fails"), [(0.0, False), (NOISE_MARGIN * 0.9, False), (NOISE_MARGIN * 1.1, True)])
def test_check_fails_only_beyond_the_noise_margin(shortfall, fails):
    """A target missed by less than the noise margin passes --check (and is labelled so); missed by more, it fails."""
    ratio = 25.0 * (1 - shortfall)  # target: TensorLoader >= 25x DataLoader at F=3, B=32 on CPU
    rows = _epoch(tensorloader=1.0 / ratio, bound=1.0 / ratio)
    failures = [f for f in check_failures(rows) if "DataLoader default" in f]
    assert bool(failures) == fails, failures
    if 0 < shortfall <= NOISE_MARGIN:
        assert "within the noise margin" in format_table(rows)


def test_check_option_sets_the_exit_status(monkeypatch):
    """`batchfeed bench --check` returns 1 when check_failures finds anything, 0 otherwise; without --check, 0."""
    outcomes = {"bad": ["a target missed"], "good": []}
    for name, found in outcomes.items():
        monkeypatch.setattr(bench, "run", lambda args, out=None: [])
        monkeypatch.setattr(bench, "check_failures", lambda rows, found=found: found)
        assert bench.main(["--check"]) == (1 if found else 0), name
        assert bench.main([]) == 0, name


def test_bench_measures_on_one_thread_by_default_and_restores_torch(capsys):
    """Without --threads the measurement runs on 1 torch thread, the header says so, and torch's setting is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert bench.main(["--n", "512", "--features", "3", "--batch-size", "64", "--repeats", "1",
                                "--no-training", "--no-progress", "--rivals", "permute_slice"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "1 torch thread)" in capsys.readouterr().out.splitlines()[0]


# --- out of core (issue 15) ------------------------------------------------------------------------

def _ooc(rival: str, seconds: float, cold: bool = False, resident: list[float] | None = None) -> Measurement:
    from batchfeed.outofcore import GROUPS, OOC_RIVALS

    return Measurement(GROUPS[cold], rival, OOC_RIVALS[rival], N, 64, 256, "cpu", N * 264, N, [seconds],
                       resident=resident if resident is not None else ([0.0] if cold else []))


@pytest.mark.parametrize(("ratio", "met"), [(0.8, True), (0.79, False)])
def test_out_of_core_targets_are_judged_from_same_run_ratios(ratio, met):
    """Warm: TensorLoader >= 0.8x the memmap batched-gather bound and >= 20x DataLoader(NpyDataset);
    cold: >= 0.8x the memory map's random-batch read bound; at and just past each threshold."""
    rows = [_ooc("batches_memmap", 1.0), _ooc("dataloader_mmap", 1.0), _ooc("tensorloader_mmap", 1.0 / ratio),
            _ooc("batches_take", 1.0, cold=True), _ooc("tensorloader_mmap", 1.0 / ratio, cold=True)]
    targets = {t.name: t for t in bench.check_targets(rows)}
    assert len(targets) == 3, sorted(targets)
    gather = next(t for n, t in targets.items() if "batched-gather" in n)
    dl = next(t for n, t in targets.items() if "DataLoader(NpyDataset)" in n.split(" / ")[-1])
    cold = [t for n, t in targets.items() if "cold" in n]
    assert gather.met == met and len(cold) == 1 and all(t.met == met for t in cold)
    assert dl.value == pytest.approx(ratio) and not dl.met
    table = format_table(rows)
    assert "page cache warm" in table and "page cache dropped" in table and "/ own batch reads" in table


@pytest.mark.parametrize(("cold_ratio", "warm_ratio", "met"), [(1.0, 0.5, True), (0.99, 0.49, False)])
def test_preadv_targets_are_its_read_bound_cold_and_half_the_memory_map_warm(cold_ratio, warm_ratio, met):
    """Issue 23: TensorLoader(preadv) >= 1.0x its random-batch read bound cold, >= 0.5x TensorLoader(memmap) warm."""
    rows = [_ooc("batches_pread", 1.0, cold=True), _ooc("tensorloader_pread", 1.0 / cold_ratio, cold=True),
            _ooc("tensorloader_mmap", 1.0), _ooc("tensorloader_pread", 1.0 / warm_ratio)]
    targets = bench.check_targets(rows)
    assert len(targets) == 2 and all(t.met == met for t in targets), targets


@pytest.mark.parametrize(("ratio", "met"), [(5.0, True), (4.9, False)])
def test_tensorloader_is_held_to_5x_each_peers_best_configuration_warm(ratio, met):
    """Against the fastest feeding configuration of each peer (its training rows ignored), warm only."""
    def peer(key: str, seconds: float) -> Measurement:
        return Measurement("ooc-warm", key, key, N, 64, 256, "cpu", N * 264, N, [seconds])

    rows = [_ooc("tensorloader_mmap", 1.0), peer("peer_litdata_w0", ratio), peer("peer_litdata_w2", ratio * 2),
            peer("peer_litdata_w0_train", 0.01), peer("peer_mosaic_w0", ratio * 3)]
    targets = {t.name: t for t in bench.check_targets(rows)}
    assert len(targets) == 2, sorted(targets)
    lit = next(t for n, t in targets.items() if "peer_litdata_w0 " in n)
    assert lit.value == pytest.approx(ratio) and lit.met == met
    assert next(t for n, t in targets.items() if "peer_mosaic" in n).met


def test_a_cold_epoch_whose_files_stayed_cached_marks_the_run_disturbed():
    """The drop is checked, not assumed: a cold row with more than 5% of the files resident is flagged."""
    from batchfeed.targets import COLD_RESIDENT_MAX

    fine = [_ooc("batches_take", 1.0, cold=True, resident=[0.0, COLD_RESIDENT_MAX])]
    cached = [_ooc("batches_take", 1.0, cold=True, resident=[0.0, 0.5])]
    assert disturbed(fine) == []
    [line] = disturbed(cached)
    assert "50% of the files still cached" in line and "did not start cold" in line
    assert any("disturbed run" in f for f in check_failures(cached))


@pytest.mark.parametrize(("argv", "match"), [
    (["--out-of-core", "--rivals", "memcpy"], r"--rivals: memcpy: not measured --out-of-core"),
    (["--rivals", "batches_take"], r"--rivals: batches_take: not measured in memory"),
    (["--out-of-core", "--dir", "/no/such/folder"], r"--dir: '/no/such/folder' is not an existing folder"),
])
def test_out_of_core_arguments_that_do_not_fit_are_refused_naming_them(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_bench_out_of_core_measures_every_rival_warm_and_cold_and_names_the_storage(tmp_path, capsys):
    """A tiny run end to end: every rival fed all N samples, cold epochs started with the files dropped,
    and the report names the storage the files were on."""
    out = tmp_path / "ooc.json"
    assert bench.main(["--out-of-core", "--n", "3000", "--features", "8", "--batch-size", "64", "--repeats", "1",
                       "--no-progress", "--no-peers", "--dir", str(tmp_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "files in" in text and "mounted at" in text
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert {r["group"] for r in rows} == {"ooc-warm", "ooc-cold", "overlap-warm", "overlap-cold"}
    assert all(r["samples"] == 3000 for r in rows)
    from batchfeed.pagecache import drop

    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * 8192)
    if drop([probe])[str(probe)] == 0.0:  # tmpfs keeps a file's pages: there, no epoch can start cold
        assert all(r["resident"] == [0.0] for r in rows if r["group"].endswith("cold")), [r["resident"] for r in rows]
    assert data["meta"]["storage"] and len(data["targets"]) == 5


def test_bench_out_of_core_feeds_an_installed_peer_and_checks_its_order(tmp_path, capsys):
    """litdata (when installed): converted with its writer, fed warm, every epoch checked exactly once."""
    pytest.importorskip("litdata")
    out = tmp_path / "ooc.json"
    assert bench.main(["--out-of-core", "--n", "3000", "--features", "64", "--batch-size", "64", "--repeats", "1",
                       "--no-progress", "--no-training", "--cache", "warm", "--rivals", "tensorloader_mmap",
                       "--peer-workers", "0", "--dir", str(tmp_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "litdata: converted with its writer" in text and "MB on disk" in text
    assert "peer_litdata_w0: 2 epochs, each sample exactly once: yes" in text
    rows = json.loads(out.read_text())["rows"]
    assert {r["rival"] for r in rows} == {"tensorloader_mmap", "peer_litdata_w0"}
    assert all(r["samples"] == 3000 for r in rows)


def test_every_out_of_core_rival_reads_the_whole_epoch_and_unknown_ones_are_refused(tmp_path):
    from batchfeed.outofcore import OOC_RIVALS, make_files, ooc_epoch, read_profile

    files = make_files(tmp_path, 1000, 4)
    for name in OOC_RIVALS:
        close, epoch = ooc_epoch(name, files, 64)
        assert epoch() == 1000, name
        close()
    with pytest.raises(ValueError, match=r"unknown out-of-core rival 'nope'; known: dataloader_mmap"):
        ooc_epoch("nope", files, 64)
    profile = read_profile(files, 64, repeats=1)
    assert set(profile) >= {"take, permutation order", "sorted take + put back", "read_batch of 16 batches + split"}
    assert all(v > 0 for v in profile.values())


def test_every_overlap_rival_trains_or_reads_the_whole_epoch_and_the_table_compares_them(tmp_path):
    """The reading-ahead measurement end to end on a tiny file: every rival fed all N samples, cold
    epochs started cold, and the table divides each by training alone and by the loop without reading ahead."""
    from batchfeed.outofcore import make_files
    from batchfeed.overlap import OVERLAP_RIVALS, measure_overlap

    files = make_files(tmp_path, 2000, 8)
    rows = list(measure_overlap(files, 64, cold=True, repeats=1).values())
    assert [m.rival for m in rows] == list(OVERLAP_RIVALS)
    assert all(m.samples == 2000 and len(m.resident) == 1 for m in rows)
    table = format_table(rows)
    assert "/ training alone" in table and "/ not ahead" in table and "page cache dropped" in table


# --- timed claims (issue 25): CPU-time rates, waiting for a CPU --------------------------------

def _waited(seconds: list[float], waits: list[float], clock: str = "wall", cpu: list[float] | None = None) -> Measurement:
    return Measurement("workers", "w2", "2 workers", 96, 0, 16, "cpu", 0, 96, seconds, cpu_seconds=cpu or [],
                       cpu_wait=waits, clock=clock)


def test_a_cpu_clock_rates_the_measuring_threads_cpu_time():
    """clock='cpu': best is the shortest CPU time, wall times aside; 'wall' keeps the shortest wall time."""
    m = _waited([0.5, 0.2, 0.9], [0.0, 0.0, 0.0], clock="cpu", cpu=[0.1, 0.15, 0.05])
    assert m.best == 0.05 and m.samples_per_s == 96 / 0.05
    assert _waited([0.5, 0.2, 0.9], [], cpu=[0.1, 0.15, 0.05]).best == 0.2


def test_the_least_cpu_wait_is_the_cleanest_epochs_fraction():
    """least_cpu_wait: the smallest wait / wall over the epochs; None when the OS said nothing."""
    assert _waited([1.0, 0.5, 0.4], [0.3, 0.05, 0.2]).least_cpu_wait == pytest.approx(0.1)
    assert _waited([1.0], []).least_cpu_wait is None


@pytest.mark.parametrize(("waits", "found"), [([0.3, 0.1], False), ([0.3, 0.1000001], True), ([0.5, 0.5], True)])
def test_a_wall_clock_measurement_without_a_clean_epoch_marks_the_run_disturbed(waits, found):
    """With max_cpu_wait, a wall-clock measurement every epoch of which waited more than that fraction is disturbed."""
    m = _waited([1.0, 1.0], waits)
    lines = disturbed([m], max_cpu_wait=0.1)
    assert bool(lines) == found
    if found:
        assert lines == [f"workers N=96 B=16: 2 workers: every one of its 2 epochs waited {min(waits):.0%} or more of "
                         "its time for a CPU (clean: <= 10%)"]
    assert disturbed([m]) == [], "without max_cpu_wait the waits are not checked (batchfeed bench's default)"


def test_cpu_clock_and_unknown_waits_are_never_disturbed_by_waiting():
    """A CPU-time measurement does not count waiting, and waits the OS did not give cannot be judged."""
    assert disturbed([_waited([1.0], [0.9], clock="cpu", cpu=[0.1]), _waited([1.0], [])], max_cpu_wait=0.1) == []


def test_timed_appends_wall_cpu_and_wait(monkeypatch):
    """timed(fn, m) returns fn's result and appends one wall time, one CPU time and one wait (where known)."""
    m = _waited([], [])
    assert throughput.timed(lambda: sum(range(10_000)), m) == sum(range(10_000))
    assert len(m.seconds) == len(m.cpu_seconds) == 1 and 0 <= m.cpu_seconds[0] <= m.seconds[0] * 1.05 + 1e-3
    assert len(m.cpu_wait) == (1 if throughput.cpu_wait() is not None else 0)
    known = len(m.cpu_wait)
    monkeypatch.setattr(throughput, "cpu_wait", lambda: None)
    throughput.timed(lambda: 0, m)
    assert len(m.seconds) == len(m.cpu_seconds) == 2 and len(m.cpu_wait) == known, "no wait appended when unknown"


def test_measure_epochs_refuses_an_unknown_clock():
    """clock is 'wall' or 'cpu'; anything else is a ValueError naming it."""
    with pytest.raises(ValueError, match="clock must be 'wall' or 'cpu', got 'gpu'"):
        throughput.measure_epochs(throughput.make_data(64, 3), 32, rivals=["permute_slice"], clock="gpu")


def test_measure_epochs_keeps_every_clock_of_every_epoch():
    """Each timed epoch leaves a wall time, a CPU time and (where known) a wait; the clock asked for is the one rated."""
    rows = throughput.measure_epochs(throughput.make_data(256, 3), 32, rivals=["permute_slice"], repeats=3, clock="cpu")
    m = rows["permute_slice"]
    assert m.clock == "cpu" and len(m.seconds) == len(m.cpu_seconds) == 3 and m.best == min(m.cpu_seconds)


def test_a_step_clock_rates_the_median_full_batch_step():
    """clock='step': an epoch is samples / batch_size steps at the median step's CPU time; a few slow steps do not move it."""
    m = Measurement("training", "dataloader", "DataLoader", 96, 3, 16, "cpu", 0, 96, [1.0], cpu_seconds=[1.0],
                    step_cpu_seconds=[0.01, 0.02, 0.01, 0.9, 0.01], clock="step")
    assert m.best == pytest.approx(0.01 * 96 / 16) and m.samples_per_s == pytest.approx(16 / 0.01)


def test_paired_steps_train_every_rival_on_every_sample_step_by_step(monkeypatch):
    """measure_paired_steps: each epoch trains both loops on all N samples, one step of each in turn (the order
    alternating), keeping one CPU time per full-batch step of the timed epochs; refused off the CPU and for epochs < 1."""
    from batchfeed import paired

    calls = []
    real = paired.update
    monkeypatch.setattr(paired, "update", lambda model, *a, **k: calls.append(id(model)) or real(model, *a, **k))
    rows = paired.measure_paired_steps(throughput.make_data(100, 3), 32, epochs=2, warmup=1)
    assert list(rows) == ["dataloader", "permute_slice"]
    for m in rows.values():
        assert m.samples == 100 and m.clock == "step" and len(m.seconds) == len(m.cpu_seconds) == 2
        assert len(m.step_cpu_seconds) == 2 * 3, "3 full batches of 32 in 100 samples, 2 timed epochs"
    first, second = calls[0], calls[1]
    assert first != second and calls[:8] == [first, second, second, first, first, second, second, first]
    assert len(calls) == 3 * 4 * 2, "3 epochs (1 warm-up) of 4 steps for each of 2 loops"
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        paired.measure_paired_steps(throughput.make_data(100, 3), 32, epochs=0)


def test_worker_epochs_takes_rounds_until_clean(monkeypatch):
    """worker_epochs interleaves 0 and 2 workers; past `rounds` it goes on, up to max_rounds, while one has no clean epoch."""
    from batchfeed import PairDataset, make_seed_data, workers

    waits = iter([0.5, 0.5, 0.5, 0.01, 0.5, 0.5, 0.01, 0.01, 0.9, 0.9])
    order = []

    def fake_timed(fn, m):
        order.append(m.rival)
        m.seconds.append(1.0)
        m.cpu_wait.append(next(waits))
        return 8

    monkeypatch.setattr(workers, "timed", fake_timed)
    ds = PairDataset(*make_seed_data(8, 3, seed=0))
    rows = workers.worker_epochs(ds, (2, 0), rounds=2, max_rounds=5, max_cpu_wait=0.1, batch_size=4)
    assert order == ["w0", "w2"] * 4, "clean after round 4 (2 workers in round 2, none in round 4): no fifth round"
    assert rows[0].samples == 8 and rows[0].least_cpu_wait == 0.01
    order.clear()
    workers.worker_epochs(ds, (0, 2), rounds=1, batch_size=4)
    assert order == ["w0", "w2"], "without max_cpu_wait, exactly `rounds` rounds"
    with pytest.raises(ValueError, match=r"max_rounds \(1\) must be at least rounds \(2\)"):
        workers.worker_epochs(ds, (0, 2), rounds=2, max_rounds=1, batch_size=4)


def test_cpu_wait_reads_this_threads_run_delay_or_says_none():
    """cpu_wait() is a non-decreasing number of seconds on Linux (schedstat), None where the OS does not say."""
    from batchfeed.machine import cpu_wait

    a = cpu_wait()
    b = cpu_wait()
    assert (a is None and b is None) or (0 <= a <= b)
