"""Multi-process training: a train stage re-runs itself under ``accelerate launch``.

DVC starts ``python -m stages.train_sft`` once. With ``train.distributed.num_processes`` above 1
(or an accelerate ``config_file``), that process trains nothing: it starts
``python -m accelerate.commands.launch ... --module stages.train_sft``, which runs the stage in
every process (torchrun underneath), passes stop signals on to it, and exits with its status.
The launched processes find the launcher's variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``)
and :data:`LAUNCHED_ENV`, so they train instead of launching again; the trainer gives each one
its share of every batch, and only the main process writes the model, metrics and curve and
logs to MLflow (:mod:`complexif.runtime`, :mod:`complexif.training.common`).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from complexif.config import ConfigError, DistributedConfig, Params
from complexif.runtime import STOP_SIGNALS, StageStopped, world_size

log = logging.getLogger(__name__)

# Set in every launched process: whatever the launcher's own variables, it never launches again.
LAUNCHED_ENV = "COMPLEXIF_LAUNCHED"


def wants_launcher(cfg: DistributedConfig) -> bool:
    """Whether training runs under ``accelerate launch``: several processes, or an accelerate
    config (FSDP or DeepSpeed, which also serve one GPU: CPU offload)."""
    return cfg.num_processes > 1 or cfg.config_file is not None


def launched() -> bool:
    """Whether a launcher started this process (ours, or a user's own ``accelerate launch``,
    ``torchrun`` or ``mpirun``)."""
    return os.environ.get(LAUNCHED_ENV) == "1" or "LOCAL_RANK" in os.environ or world_size() > 1


def launch_command(cfg: DistributedConfig, target: Sequence[str], python: str) -> list[str]:
    """The ``accelerate launch`` command line that runs ``target`` in ``cfg.num_processes``
    processes, with interpreter ``python``.

    Without a config file it is plain DDP: ``--multi_gpu`` picks torchrun, which starts the
    processes on a CPU-only machine too (the trainer's ``use_cpu`` then makes them gloo
    processes); ``--cpu`` would pick accelerate's single-process launcher, which needs MPI for
    more. Precision always comes from ``train.*.precision``: ``--mixed_precision no`` keeps an
    accelerate config (or the user's default one) from turning fp16/bf16 autocast on, and the
    trainer turns bf16 on itself where the params ask for it.
    """
    cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.num_processes)]
    if cfg.config_file is not None:
        cmd += ["--config_file", cfg.config_file]
    else:
        # Spelled out so accelerate neither asks for them nor takes them from a default config.
        cmd += ["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no"]
    cmd += ["--mixed_precision", "no"]
    if cfg.main_process_port is not None:
        cmd += ["--main_process_port", str(cfg.main_process_port)]
    return [*cmd, *target]


def stage_target() -> list[str]:
    """How this process was started, as ``accelerate launch`` takes it: ``--module NAME`` for
    ``python -m NAME``, else the script's path, then the same arguments."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        target = ["--module", spec.name]
    else:
        target = [str(Path(main.__file__).resolve())]
    return [*target, *sys.argv[1:]]


def launch_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {**environ, LAUNCHED_ENV: "1"}


def relaunch(params: Params) -> int | None:
    """:func:`complexif.runtime.run_stage`'s launcher for the train stages: run this stage under
    ``accelerate launch`` when ``train.distributed`` asks for it and no launcher started this
    process, and return its exit status; None means train here."""
    cfg = params.train.distributed
    if not wants_launcher(cfg):
        return None
    if launched():
        if world_size() != cfg.num_processes:
            log.warning(
                "train.distributed.num_processes is %d, but the launcher started %d processes: "
                "one optimizer step sees per_device_train_batch_size x %d x "
                "gradient_accumulation_steps rows",
                cfg.num_processes,
                world_size(),
                world_size(),
            )
        return None
    if cfg.config_file is not None and not Path(cfg.config_file).is_file():
        raise ConfigError(
            f"train.distributed.config_file: {cfg.config_file!r} is not a file "
            "(examples: configs/accelerate/)"
        )
    cmd = launch_command(cfg, stage_target(), sys.executable)
    log.info("training in %d processes: %s", cfg.num_processes, shlex.join(cmd))
    return run_launcher(cmd, launch_env(os.environ))


def run_launcher(cmd: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``cmd`` with this process's output, and return its exit status.

    The launcher gets its own session, so a Ctrl-C in the terminal reaches this process only,
    and each stop signal is passed on exactly once: torchrun then passes it to every training
    process, which stops cleanly and keeps its checkpoints (a second signal straight from the
    terminal as well would make them exit without cleaning up). Once the launcher has ended,
    a stop is raised here as :class:`~complexif.runtime.StageStopped`, which ``run_stage`` reports.
    """
    with _relayed_signals() as relay:
        proc = subprocess.Popen(list(cmd), env=dict(env), start_new_session=True)
        relay.attach(proc)
        status = proc.wait()
    if relay.received:
        raise StageStopped(relay.received[0])
    # A launcher killed by a signal: the shell's convention, as for the stage itself.
    return 128 - status if status < 0 else status


class _Relay:
    """A signal handler that passes each stop signal on to one process."""

    def __init__(self) -> None:
        self.target: subprocess.Popen | None = None
        self.received: list[int] = []

    def __call__(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        self._send(signum)

    def attach(self, proc: subprocess.Popen) -> None:
        self.target = proc
        if self.received:  # it came while the launcher was being started
            self._send(self.received[0])

    def _send(self, signum: int) -> None:
        if self.target is not None and self.target.poll() is None:
            self.target.send_signal(signum)


@contextmanager
def _relayed_signals() -> Iterator[_Relay]:
    """While the block runs, stop signals go to the relay's target (once it has one) instead of
    stopping this process. A signal before the launcher exists is kept and passed on as soon
    as it does."""
    relay = _Relay()
    if threading.current_thread() is not threading.main_thread():
        yield relay
        return
    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, relay)
    try:
        yield relay
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
