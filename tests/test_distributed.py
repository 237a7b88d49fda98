"""Data-parallel training on MPI (nnframe.distributed), run under a real `mpiexec -n 2`.

Each test writes a script and starts it on two ranks with the mpiexec of the test's Python
environment (the MPICH wheel of `nnframe[mpi]`, which `make test` installs); a job that does
not end within 60 seconds fails the test. The ranks write what they hold to .npz files that
the test compares with one process training the same way.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import nnframe
from nnframe.errors import InputError

BIN = Path(sys.executable).parent
TIMEOUT = 60  # seconds: a fault must end the whole job within this


@pytest.fixture(scope="session")
def mpiexec():
    path = BIN / "mpiexec"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        path = None
    if path is None or not path.exists():
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("mpi4py and mpiexec are not installed, but CI must run the "
                        "distributed tests (make test installs nnframe[mpi])")
        pytest.skip("needs pip install 'nnframe[mpi]'")
    return str(path)


def ranks(mpiexec, tmp_path, code, *args, n=2, timeout=TIMEOUT):
    """Run ``code`` on ``n`` ranks; the finished process (its run must end in time)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return run([mpiexec, "-n", str(n), sys.executable, str(script), *map(str, args)],
               tmp_path, timeout)


def run(command, cwd, timeout=TIMEOUT):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the MPI job did not end within {timeout} s: {exc.stdout} {exc.stderr}")


DATA = """
import numpy as np, nnframe
from mpi4py import MPI
comm = MPI.COMM_WORLD
rng = np.random.default_rng(1)
x = rng.random((129, 20)); ids = rng.integers(0, 3, 129)
vx = rng.random((31, 20)); vids = rng.integers(0, 3, 31)
"""

# (name, network keywords, train keywords): each trains 3 epochs with seed 7. 129 rows in
# batches of 64 end with a batch of 1 row, fewer than the ranks; batch 1 leaves one rank
# without rows in every batch.
CASES = {
    "sgd": ({}, dict(batch_size=64, optimizer="sgd")),
    "nesterov_decay": ({}, dict(batch_size=32, optimizer=("sgd", dict(
        momentum=0.9, nesterov=True, weight_decay=1e-3)))),
    "adam_dropout_cosine": ({"dropout": [0.1, 0.3, 0.0]}, dict(
        batch_size=64, optimizer="adam", schedule=("cosine", dict(warmup=1)),
        validation=True)),
    "rmsprop_step_batch1": ({"dropout": [0.0, 0.5, 0.0]}, dict(
        batch_size=1, optimizer=("rmsprop", dict(momentum=0.5)),
        schedule=("step", dict(step_size=1)))),
    "lion_plugin": ({}, dict(batch_size=50, optimizer="lion", validation=True)),
}

TRAIN = """
def build(net_kw, kw):
    net = nnframe.NeuralNetwork(3, [20, 16, 3], [None, "tanh", "softmax"], "cross_entropy",
                                dtype="float64", seed=3, **net_kw)
    opt = kw["optimizer"]
    if isinstance(opt, tuple):
        opt = nnframe.get_optimizer(opt[0], **opt[1])
    sched = kw.get("schedule")
    if isinstance(sched, tuple):
        sched = nnframe.get_schedule(sched[0], **sched[1])
    val = (vx, vids) if kw.get("validation") else None
    return net, dict(optimizer=opt, schedule=sched, seed=7, validation_data=val)
"""


def test_two_ranks_train_as_one_process(mpiexec, tmp_path):
    code = DATA + TRAIN + f"""
import sys
CASES = {CASES!r}
for name, (net_kw, kw) in CASES.items():
    net, options = build(net_kw, kw)
    ranks_seen = set()
    history = net.train(kw["batch_size"], x, ids, 3, 0.05, distributed=True,
                        callback=lambda state: ranks_seen.add(state.rank), **options)
    assert ranks_seen == {{comm.rank}}, ranks_seen
    np.savez(f"{{name}}_{{comm.rank}}.npz", *net.parameters(),
             **{{"h_" + k: v for k, v in history.items()}})
"""
    done = ranks(mpiexec, tmp_path, code)
    assert done.returncode == 0, done.stderr
    namespace = {}
    exec(DATA.replace("from mpi4py import MPI\ncomm = MPI.COMM_WORLD\n", "") + TRAIN,
         namespace)
    for name, (net_kw, kw) in CASES.items():
        net, options = namespace["build"](net_kw, kw)
        history = net.train(kw["batch_size"], namespace["x"], namespace["ids"], 3, 0.05,
                            **options)
        rank0, rank1 = (np.load(tmp_path / f"{name}_{r}.npz") for r in (0, 1))
        for i, param in enumerate(net.parameters()):
            assert np.array_equal(rank0[f"arr_{i}"], rank1[f"arr_{i}"]), name  # identical
            np.testing.assert_allclose(rank0[f"arr_{i}"], param, rtol=1e-9, atol=1e-12,
                                       err_msg=name)
        assert set(history) == {k[2:] for k in rank0.files if k.startswith("h_")}
        for key, values in history.items():
            np.testing.assert_allclose(rank0[f"h_{key}"], values, rtol=1e-9, err_msg=name)
            np.testing.assert_array_equal(rank0[f"h_{key}"], rank1[f"h_{key}"])


def test_one_rank_communicator_trains_as_without_one():
    from mpi4py import MPI

    rng = np.random.default_rng(0)
    x, ids = rng.random((70, 5)), rng.integers(0, 2, 70)

    def trained(**kw):
        net = nnframe.NeuralNetwork(3, [5, 8, 2], [None, "relu", "softmax"],
                                    "cross_entropy", dtype="float64", seed=1,
                                    dropout=[0.2, 0.2, 0])
        history = net.train(16, x, ids, 2, 0.1, seed=2, optimizer="adam", **kw)
        return net, history

    (alone, h1), (comm, h2) = trained(), trained(distributed=MPI.COMM_SELF)
    for p, q in zip(alone.parameters(), comm.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-12)


def test_a_rank_reads_only_its_rows_of_each_batch(mpiexec, tmp_path):
    # uint8 rows whose first value is the row's number, in a file: gathered and converted
    # one batch at a time (LAZY_BYTES 0 makes this small file count as large).
    x = np.random.default_rng(0).integers(0, 255, (90, 6), dtype=np.uint8)
    x[:, 0] = np.arange(90)
    x.tofile(tmp_path / "x.u8")
    code = """
import numpy as np, nnframe, nnframe._validation
from mpi4py import MPI
from nnframe.distributed import DistributedTrainer
comm = MPI.COMM_WORLD
nnframe._validation.LAZY_BYTES = 0
read = []
step = DistributedTrainer.step

def logged(self, xb, *args):
    assert xb.dtype == np.float32
    read.append(xb[:, 0].astype(int))
    return step(self, xb, *args)

DistributedTrainer.step = logged
x = np.memmap("x.u8", dtype=np.uint8, mode="r", shape=(90, 6))
ids = np.arange(90) % 2
net = nnframe.NeuralNetwork(3, [6, 4, 2], [None, "relu", "softmax"], "cross_entropy", seed=0)
net.train(20, x, ids, 2, 0.01, seed=5, distributed=True)
everything = comm.gather(read)
if comm.rank == 0:
    for mine, theirs in zip(*everything, strict=True):  # batch by batch
        assert len(np.intersect1d(mine, theirs)) == 0, (mine, theirs)
        assert abs(len(mine) - len(theirs)) <= 1
    for epoch in range(2):
        rows = [r for rank in everything for r in rank[epoch * 5:epoch * 5 + 5]]
        assert sorted(np.concatenate(rows)) == list(range(90))
    print("ok", len(everything[0]))
"""
    done = ranks(mpiexec, tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "ok 10" in done.stdout  # 2 epochs of 5 batches, each read once per rank


FAULTS = DATA + """
import os, signal, sys
what = sys.argv[1]

class Failing(nnframe.Optimizer):
    name = "failing"
    def update(self, param, grad, state, learning_rate, step):
        if comm.rank == 1 and step == 3:
            raise (KeyboardInterrupt if what == "interrupt" else ValueError("boom on rank 1"))
        param -= learning_rate * grad

class Late(nnframe.callbacks.Callback):
    def on_batch_end(self, state):
        if comm.rank == 1 and state.epoch == 2 and state.batch == 2:
            if what == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if what == "callback":
                raise RuntimeError("callback boom on rank 1")
            if what == "sigint":  # Ctrl-C waits for the next batch, never cuts a callback
                os.kill(os.getpid(), signal.SIGINT)
                os.write(1, b"callback finished\\n")

net = nnframe.NeuralNetwork(3, [20, 16, 3], [None, "relu", "softmax"], "cross_entropy",
                            dtype="float64", seed=3)
options = dict(seed=1, callbacks=[Late()], distributed=True)
lr = 1e300 if what == "diverge" else 0.1
if what in ("optimizer", "interrupt"):
    options["optimizer"] = Failing()
net.train(16, x, ids, 1, 0.1, seed=1, distributed=True)  # one good epoch first
if what == "mismatch" and comm.rank == 1:
    x, ids = x[:100], ids[:100]
if what == "other_rows" and comm.rank == 1:
    x = x[::-1]
start = [p.copy() for p in net.parameters()]
try:
    net.train(16, x, ids, 2, lr, **options)
except BaseException as exc:
    same = all(np.array_equal(p, q) for p, q in zip(net.parameters(), start))
    kept = len(net.history["loss"])
    os.write(1, f"rank {comm.rank}: {type(exc).__name__}: {exc} [restored={same} "
                f"epochs={kept}]\\n".encode())
    sys.exit(3)
os.write(1, f"rank {comm.rank}: finished\\n".encode())
"""


@pytest.mark.parametrize("what, kind, message", [
    ("optimizer", "PluginRuntimeError", "the optimizer 'failing'"),
    ("interrupt", "KeyboardInterrupt", "interrupted"),
    ("callback", "RuntimeError", "callback boom on rank 1"),
    ("sigint", "KeyboardInterrupt", "interrupted (KeyboardInterrupt, Ctrl-C)"),
])
def test_a_fault_on_one_rank_ends_every_rank_with_its_message(mpiexec, tmp_path, what, kind,
                                                                message):
    done = ranks(mpiexec, tmp_path, FAULTS, what)
    assert done.returncode != 0
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert len(lines) == 2, done.stdout + done.stderr
    assert lines[0].startswith("rank 0: RankFailedError: rank 1 of 2 failed: ")
    assert message in lines[0]
    assert lines[1].startswith(f"rank 1: {kind}")
    # Both restored the start of the failed epoch (epoch 2, or 3 for the callback's).
    restored = "[restored=True epochs=1]" if what in ("optimizer", "interrupt") else "epochs=2]"
    assert all(restored in line for line in lines), lines
    assert ("callback finished" in done.stdout) == (what == "sigint")


def test_divergence_is_decided_together(mpiexec, tmp_path):
    done = ranks(mpiexec, tmp_path, FAULTS, "diverge")
    lines = [line for line in done.stdout.splitlines() if line.startswith("rank ")]
    assert len(lines) == 2 and done.returncode != 0, done.stdout + done.stderr
    assert all("TrainingDivergedError: training diverged at epoch 1, batch" in line
               and "[restored=True epochs=1]" in line for line in lines), lines


@pytest.mark.parametrize("what, differs", [
    ("mismatch", "the number of rows is 129 on rank 0 and 100 on rank 1"),
    ("other_rows", "the sampled rows' checksum is"),
])
def test_ranks_called_with_different_data_refuse_together(mpiexec, tmp_path, what, differs):
    done = ranks(mpiexec, tmp_path, FAULTS, what)
    lines = [line for line in done.stdout.splitlines() if line.startswith("rank ")]
    assert len(lines) == 2 and done.returncode != 0, done.stdout + done.stderr
    assert all("InputError: every rank must call train with the same arguments, but "
               + differs in line and "[restored=True epochs=1]" in line for line in lines)


def test_a_killed_rank_ends_the_job(mpiexec, tmp_path):
    started = time.monotonic()
    done = ranks(mpiexec, tmp_path, FAULTS, "kill")
    assert done.returncode != 0
    assert "rank 0: finished" not in done.stdout
    assert time.monotonic() - started < TIMEOUT


def test_distributed_argument_is_checked():
    net = nnframe.NeuralNetwork(3, [2, 3, 2], [None, "relu", "softmax"], "cross_entropy")
    with pytest.raises(InputError, match="distributed must be True, False or an mpi4py"):
        net.train(2, np.ones((4, 2)), [0, 1, 0, 1], 1, 0.1, distributed="yes")


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    net = nnframe.NeuralNetwork(3, [2, 3, 2], [None, "relu", "softmax"], "cross_entropy")
    with pytest.raises(InputError, match=r"needs mpi4py.*pip install 'nnframe\[mpi\]'"):
        net.train(2, np.ones((4, 2)), [0, 1, 0, 1], 1, 0.1, distributed=True)


def _data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((300, 12))
    y = (x[:, 0] + x[:, 1] > 1).astype(int) + (x[:, 2] > 0.5)
    np.savez(tmp_path / "d.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:],
             y_test=y[240:])


def test_cli_two_ranks_write_once_what_one_process_writes(mpiexec, tmp_path):
    _data(tmp_path)
    options = ["--data", "d.npz", "--epochs", "3", "--hidden", "16", "--batch-size", "33",
               "--dtype", "float64", "--no-plot", "--dropout", "0.2"]
    one = run([str(BIN / "nnframe"), "train", *options, "--out", "one"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = run([mpiexec, "-n", "2", str(BIN / "nnframe"), "train", "--distributed", *options,
               "--out", "two"], tmp_path)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("test accuracy:") == 1  # rank 0 alone reports
    assert "distributed: 2 ranks" in two.stdout
    assert two.stderr.count("epoch 3/3") == 1
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    a, b = nnframe.load(tmp_path / "one/model.pkl"), nnframe.load(tmp_path / "two/model.pkl")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)
    h1, h2 = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("one", "two"))
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-9)


def test_cli_error_on_every_rank_is_printed_once(mpiexec, tmp_path):
    done = run([mpiexec, "-n", "2", str(BIN / "nnframe"), "train", "--distributed", "--data",
                "missing.npz"], tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("nnframe: error:") == 1, done.stderr
    assert "missing.npz" in done.stderr


def test_ctrl_c_to_mpiexec_ends_every_rank_with_a_consistent_checkpoint(mpiexec, tmp_path):
    import signal

    command = [mpiexec, "-n", "2", str(BIN / "nnframe"), "train", "--distributed", "--sample",
               "--epochs", "100", "--hidden", "32", "--no-plot", "--out", "run"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        job = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                               env=env)
        deadline = time.monotonic() + TIMEOUT
        while "epoch 3/100" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = time.monotonic()
        job.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            code = job.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            job.kill()
            pytest.fail(f"Ctrl-C did not end the job: {log.read_text()[-2000:]}")
    text = log.read_text()
    assert code != 0 and time.monotonic() - sent < TIMEOUT
    # Rank 0 alone says so: interrupted itself, or told that rank 1 was first.
    said = [line for line in text.splitlines() if "interrupted" in line]
    assert len(said) == 1, text[-2000:]
    assert said[0] in ("nnframe: interrupted",
                       "nnframe: error: rank 1 of 2 failed: interrupted (KeyboardInterrupt, "
                       "Ctrl-C)"), said
    checkpoint = nnframe.load(tmp_path / "run/checkpoint.pkl")
    assert checkpoint.epochs == len(checkpoint.history["loss"]) >= 2


EDGES = DATA + """
import os, signal, sys
from nnframe.callbacks import Callback, EarlyStopping
what = sys.argv[1]
net = nnframe.NeuralNetwork(3, [20, 16, 3], [None, "relu", "softmax"], "cross_entropy",
                            dtype="float64", seed=3)
kw = dict(seed=1, distributed=True)

class StopAtOnce(Callback):
    def on_train_begin(self, state):
        state.stop()

class ExtraCollective(Callback):  # what no user callback can do: put the ranks out of step
    def on_epoch_begin(self, state):
        state._trainer._agree_numbers("extra")

class InterruptAtEnd(Callback):
    def on_train_end(self, state):
        os.kill(os.getpid(), signal.SIGINT)

on0 = comm.rank == 0
try:
    if what == "stop_on_rank0":
        history = net.train(16, x, ids, 3, 0.1, callbacks=[StopAtOnce()] if on0 else [], **kw)
    elif what == "filename_on_rank0":
        history = net.train(16, x, ids, 1, 0.1, filename="m.pkl" if on0 else None, **kw)
    elif what == "schedules_differ":
        schedule = nnframe.get_schedule("step", step_size=1 if on0 else 2)
        history = net.train(16, x, ids, 2, 0.1, schedule=schedule, **kw)
    elif what == "early_stopping_on_rank0":
        stop = [EarlyStopping("val_loss", patience=0, restore_best_weights=True)] if on0 else []
        history = net.train(16, x, ids, 8, 3.0, validation_data=(vx, vids), callbacks=stop,
                            **kw)
    elif what == "out_of_step":
        history = net.train(16, x, ids, 2, 0.1, callbacks=[ExtraCollective()] if on0 else [],
                            **kw)
    elif what == "overflow_in_rank0_rows":
        x[2] = 1.7e308  # row 2 is in rank 0's share of the first batch
        history = net.train(129, x, ids, 1, 0.1, **kw)
    elif what == "validation_overflow":
        vx[30] = 1.7e308  # in rank 1's share
        history = net.train(16, x, ids, 1, 0.1, validation_data=(vx, vids), **kw)
    elif what == "interrupt_at_end":
        history = net.train(16, x, ids, 1, 0.1, callbacks=[InterruptAtEnd()] if on0 else [],
                            **kw)
    os.write(1, f"rank {comm.rank}: finished {len(history['loss'])} epochs\\n".encode())
except BaseException as exc:
    os.write(1, f"rank {comm.rank}: {type(exc).__name__}: {exc}\\n".encode())
"""


@pytest.mark.parametrize("what, rank0, rank1", [
    ("stop_on_rank0", "finished 0 epochs", "finished 0 epochs"),
    ("filename_on_rank0", "finished 1 epochs", "finished 1 epochs"),
    ("schedules_differ", "InputError: every rank must call train with the same arguments, "
     "but the schedule is <Step 'step'(step_size=1", "InputError: every rank must"),
    ("early_stopping_on_rank0", "NNFrameError: the ranks ended distributed training with "
     "different weights", "NNFrameError: the ranks ended"),
    ("out_of_step", "NNFrameError: the ranks fell out of step", "NNFrameError: the ranks fell"),
    ("overflow_in_rank0_rows", "InputError: inputs row 2 has values too large",
     "InputError: inputs row 2 has values too large"),
    ("validation_overflow", "RankFailedError: rank 1 of 2 failed: validation inputs row 30 has",
     "InputError: validation inputs row 30 has values too large"),
    ("interrupt_at_end", "KeyboardInterrupt", "RankFailedError: rank 0 of 2 failed: interrupted"),
])
def test_ranks_that_differ_or_fail_late_still_end_together(mpiexec, tmp_path, what, rank0,
                                                            rank1):
    done = ranks(mpiexec, tmp_path, EDGES, what)
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert len(lines) == 2, done.stdout + done.stderr
    assert lines[0].startswith(f"rank 0: {rank0}"), lines
    assert lines[1].startswith(f"rank 1: {rank1}"), lines
    assert (tmp_path / "m.pkl").exists() == (what == "filename_on_rank0")


def test_cli_parse_errors_are_printed_once(mpiexec, tmp_path):
    done = run([mpiexec, "-n", "2", str(BIN / "nnframe"), "train", "--distributed",
                "--epoch", "3"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("did you mean --epochs?") == 1, done.stderr


def test_cli_under_mpiexec_without_distributed_says_so_once(mpiexec, tmp_path):
    done = run([mpiexec, "-n", "2", str(BIN / "nnframe"), "train", "--sample", "--epochs",
                "1", "--hidden", "8", "--no-plot", "--out", "run"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("note: running under mpiexec with 2 ranks but without "
                             "--distributed") == 1, done.stderr


def test_cli_ranks_given_different_options_are_told_in_options(mpiexec, tmp_path):
    _data(tmp_path)
    command = (f"{BIN / 'nnframe'} train --distributed --data d.npz --hidden 8 --no-plot "
               "--epochs $((1 + PMI_RANK))")  # rank 1 asks for another number of epochs
    done = run([mpiexec, "-n", "2", "sh", "-c", command], tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("nnframe: error:") == 1, done.stderr
    assert ("every rank must run nnframe train with the same options, but --epochs is 1 on "
            "rank 0 and 2 on rank 1; give every rank the same data (the same files)"
            in done.stderr), done.stderr
