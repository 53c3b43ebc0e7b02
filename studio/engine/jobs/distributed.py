"""Runs on several processes, GPUs and machines: handed to accelerate (DDP, DeepSpeed, FSDP; torchrun underneath).

A run whose ``distributed`` section asks for more than one process (or for DeepSpeed/FSDP) is started as
``python -m accelerate.commands.launch --config_file=RUN/accelerate.yaml ... -m studio.train RUN/config.yaml
--output-dir=RUN``: the studio writes that accelerate config into the run folder from ``cfg.distributed`` and nothing of
its own sits between accelerate and the trainer. Here:

- what this machine has (``detect_gpus`` via ``nvidia-smi``, ``cpu_cores``), without importing torch;
- ``problems(cfg)``: every reason the launch would fail or do something else than asked, each naming its key
  (more processes than devices, DeepSpeed/FSDP missing or on a CPU, a backend the method cannot use, a main machine
  that is not reachable) -- the Train form, the queue, the API and ``studio train`` all call it before starting;
- ``accelerate_config`` / ``write_accelerate_config`` and ``launch_argv``: the file and the command;
- ``apply_devices``: what a training process does with ``devices`` before CUDA starts.

``mixed_precision`` reaches the trainer in ``train/common.py`` (``trainer_args``: bf16/fp16); the accelerate config says
``no`` for ``auto`` so that those flags decide. The form checks without the network (``problems(cfg, network=False)``);
the queue checks the main machine's address after the page's access policy allowed a run across machines.

Pure standard library (+ yaml and studio.config): the UI imports it without torch.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from studio.config import RunConfig

LAUNCH_MODULE = "accelerate.commands.launch"
TRAIN_MODULE = "studio.train"
ACCELERATE_CONFIG = "accelerate.yaml"
CONNECT_TIMEOUT_S = 3.0  # a machine that is not the main one checks it can reach the main one, this long at most
SHARDING = ("deepspeed_zero3", "fsdp")  # backends that split the weights themselves across processes


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    memory_mib: int | None = None


@dataclass(frozen=True)
class Layout:
    """How a run is spread: what the fit-and-time estimate and the launcher both read (see README, "More than one
    machine"). ``global_batch`` rows go into one optimizer step across every process of every machine."""

    processes_per_machine: int
    num_machines: int
    world_size: int
    devices: tuple[str, ...]  # GPU indices this machine uses; () on the CPU
    backend: str
    global_batch: int
    launcher: bool


# -- this machine ------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def detect_gpus() -> tuple[Gpu, ...]:
    """The NVIDIA GPUs ``nvidia-smi`` lists (PCI order, which ``apply_devices`` makes CUDA use too), limited to
    ``CUDA_VISIBLE_DEVICES`` when the studio was started with it; () without a driver."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            mem = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            gpus.append(Gpu(parts[0], parts[1], mem))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and all(v.strip().isdigit() for v in visible.split(",") if v.strip()):
        allowed = {v.strip() for v in visible.split(",") if v.strip()}
        gpus = [g for g in gpus if g.index in allowed]
    return tuple(gpus)


def cpu_cores() -> int:
    """The CPU cores this process may run on (a container's or taskset's limit included)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def device_summary(gpus: tuple[Gpu, ...] | None = None) -> str:
    """One line for the form: what ``devices`` can name on this machine."""
    gpus = detect_gpus() if gpus is None else gpus
    cpu = f"{cpu_cores()} CPU cores"
    if not gpus:
        return f"{cpu}, no GPU (nvidia-smi found none)"
    return cpu + "; " + "; ".join(f"GPU {g.index}: {g.name}" + (f" ({g.memory_mib / 1024:.0f} GiB)" if g.memory_mib
                                                                 else "") for g in gpus)


def device_choices(gpus: tuple[Gpu, ...] | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs for the devices dropdown: auto, cpu, each GPU, all GPUs."""
    gpus = detect_gpus() if gpus is None else gpus
    out = [("auto", "auto"), ("cpu", "cpu")] + [(f"{g.index} ({g.name})", g.index) for g in gpus]
    if len(gpus) > 1:
        every = ",".join(g.index for g in gpus)
        out.append((f"{every} (all GPUs)", every))
    return out


# -- the layout of a run -----------------------------------------------------------------------------------------------


def world_size(cfg: RunConfig) -> int:
    return cfg.distributed.num_processes * cfg.distributed.num_machines


def needs_launcher(cfg: RunConfig) -> bool:
    """More than one process anywhere, or a backend that only accelerate sets up."""
    return world_size(cfg) > 1 or cfg.distributed.backend != "ddp"


def under_launcher() -> bool:
    """This process is one rank of a group that accelerate/torchrun started (it must not launch again)."""
    return "WORLD_SIZE" in os.environ or "LOCAL_RANK" in os.environ


def is_worker_machine(cfg: RunConfig) -> bool:
    return cfg.distributed.num_machines > 1 and cfg.distributed.machine_rank > 0


def _gpu_list(text: str) -> list[str] | None:
    """'0,1' -> ['0', '1']; None when it is not a list of GPU indices."""
    parts = [p.strip() for p in text.split(",")]
    return parts if parts and all(p.isdigit() for p in parts) else None


def on_cpu(cfg: RunConfig, gpus: tuple[Gpu, ...] | None = None) -> bool:
    text = cfg.distributed.devices.strip().lower()
    return text == "cpu" or text == "auto" and not (detect_gpus() if gpus is None else gpus)


def chosen_gpus(cfg: RunConfig, gpus: tuple[Gpu, ...] | None = None) -> tuple[str, ...]:
    """The GPU indices the processes of this machine use, one per process; () on the CPU."""
    gpus = detect_gpus() if gpus is None else gpus
    if on_cpu(cfg, gpus):
        return ()
    text = cfg.distributed.devices.strip().lower()
    if text == "auto":
        return tuple(g.index for g in gpus[:cfg.distributed.num_processes])
    return tuple(_gpu_list(text) or ())


def layout(cfg: RunConfig, gpus: tuple[Gpu, ...] | None = None) -> Layout:
    t, d = cfg.training, cfg.distributed
    return Layout(d.num_processes, d.num_machines, world_size(cfg), chosen_gpus(cfg, gpus), d.backend,
                  t.per_device_train_batch_size * t.gradient_accumulation_steps * world_size(cfg), needs_launcher(cfg))


# -- checks before launch ----------------------------------------------------------------------------------------------


def problems(cfg: RunConfig, gpus: tuple[Gpu, ...] | None = None, network: bool = True) -> list[str]:
    """Every reason this machine cannot start ``cfg.distributed`` as asked, each naming its key; [] = ready.
    ``network=False`` leaves out the checks that open sockets (addresses, ports)."""
    gpus = detect_gpus() if gpus is None else gpus
    errors = _device_problems(cfg, gpus) + _backend_problems(cfg, gpus) + _method_problems(cfg)
    return errors + _machine_problems(cfg, network)


def _device_problems(cfg: RunConfig, gpus: tuple[Gpu, ...]) -> list[str]:
    d = cfg.distributed
    n, text = d.num_processes, d.devices.strip().lower()
    found = ", ".join(g.index for g in gpus) or "none"
    if text not in ("auto", "cpu") and _gpu_list(text) is None:
        return [f"distributed.devices={d.devices!r}: use auto, cpu or GPU indices such as 0,1"]
    if on_cpu(cfg, gpus):
        cores = cpu_cores()
        errors = [f"distributed.num_processes={n}: more processes than devices (devices={d.devices}: {cores} CPU cores "
                  "on this machine)"] if n > cores else []
        if d.mixed_precision == "fp16":
            errors.append(f"distributed.mixed_precision=fp16: needs a GPU, and this run trains on the CPU "
                          f"(devices={d.devices}); use bf16 or no")
        return errors
    if text == "auto":
        return [f"distributed.num_processes={n}: more processes than devices (devices=auto: {len(gpus)} GPU(s) "
                f"detected: {found})"] if n > len(gpus) else []
    ids = _gpu_list(text) or []
    errors = [f"distributed.devices={d.devices!r}: no GPU {i} on this machine (detected: {found})"
              for i in ids if i not in {g.index for g in gpus}]
    if len(set(ids)) != len(ids):
        errors.append(f"distributed.devices={d.devices!r}: a GPU is named twice (one process per GPU)")
    elif n > len(ids):
        errors.append(f"distributed.num_processes={n}: more processes than devices (devices={d.devices}: "
                      f"{len(ids)} GPU(s))")
    elif n < len(ids):
        errors.append(f"distributed.devices={d.devices!r}: {len(ids)} GPUs for {n} process(es); one process per GPU: "
                      f"set num_processes={len(ids)} or name {n} GPU(s)")
    return errors


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None  # a top-level lookup: imports nothing


def fsdp_installed() -> bool:
    spec = importlib.util.find_spec("torch")  # finds torch without importing it (the UI process never imports torch)
    return bool(spec and spec.origin and (Path(spec.origin).parent / "distributed" / "fsdp" / "__init__.py").is_file())


def _backend_problems(cfg: RunConfig, gpus: tuple[Gpu, ...]) -> list[str]:
    backend, errors = cfg.distributed.backend, []
    if backend.startswith("deepspeed") and not deepspeed_installed():
        errors.append(f"distributed.backend={backend}: DeepSpeed is not installed here (pip install deepspeed, on a "
                      "machine with CUDA); use ddp or fsdp")
    if backend == "fsdp" and not fsdp_installed():
        errors.append("distributed.backend=fsdp: this torch has no torch.distributed.fsdp; use ddp")
    if backend != "ddp" and on_cpu(cfg, gpus):
        # accelerate/state.py sets DeepSpeed and FSDP up only off the CPU: a CPU run would silently be plain DDP
        errors.append(f"distributed.backend={backend}: needs GPUs, and this run trains on the CPU "
                      f"(devices={cfg.distributed.devices}); accelerate would fall back to plain DDP: use ddp")
    return errors


def _method_problems(cfg: RunConfig) -> list[str]:
    d, stage, ftype = cfg.distributed, cfg.method.stage, cfg.method.finetuning_type
    errors = []
    if stage == "ppo" and needs_launcher(cfg):
        errors.append(f"distributed: backend={d.backend} with {world_size(cfg)} process(es) does not apply to "
                      "method.stage=ppo: the studio's own PPO loop runs in one process; use grpo or rloo (TRL trainers) "
                      "on several processes, or num_processes=1 with backend=ddp")
    if d.backend in SHARDING and ftype == "qlora":
        errors.append(f"distributed.backend={d.backend} does not apply to method.finetuning_type=qlora: its 4/8-bit "
                      "base weights are not sharded the way the studio loads them; use ddp or deepspeed_zero2")
    if d.backend in SHARDING and stage == "rm":
        errors.append(f"distributed.backend={d.backend} does not apply to method.stage=rm: the reward model is merged "
                      "and saved from whole weights, which this backend shards; use ddp or deepspeed_zero2")
    return errors


def _machine_problems(cfg: RunConfig, network: bool) -> list[str]:
    d = cfg.distributed
    if d.num_machines == 1:
        return [f"distributed.machine_rank={d.machine_rank}: must be 0 with num_machines=1"] if d.machine_rank else []
    errors = []
    if d.machine_rank >= d.num_machines:
        errors.append(f"distributed.machine_rank={d.machine_rank}: must be below num_machines={d.num_machines}")
    if d.main_process_port == 0:
        errors.append("distributed.main_process_port=0: several machines need a fixed port (e.g. 29500)")
    ip = d.main_process_ip.strip()
    if not ip:
        errors.append(f"distributed.main_process_ip: needed with num_machines={d.num_machines} (the address of "
                      "machine_rank 0 that every machine can reach)")
    elif network and not errors:
        errors += _address_problems(ip, d.main_process_port, main=d.machine_rank == 0)
    return errors


def _address_problems(host: str, port: int, main: bool) -> list[str]:
    """The main machine must own the address and have the port free; every other one must reach it."""
    key = f"distributed.main_process_ip={host!r}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return [f"{key}: does not resolve ({exc})"]
    family, _, _, _, addr = infos[0]
    if main:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr[0], 0))
        except OSError:
            return [f"{key}: not an address of this machine, and machine_rank=0 is the main machine: give the address "
                    "of this machine that the others reach"]
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr[0], port))
        except OSError as exc:
            return [f"distributed.main_process_port={port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                    "pick a free port"]
        return []
    try:
        with socket.create_connection((addr[0], port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        return [f"{key}: {host}:{port} is not reachable from this machine ({exc.strerror or exc}): start machine_rank 0 "
                "first, and check that its firewall lets the port through"]
    return []


# -- the accelerate config and the command -----------------------------------------------------------------------------


def accelerate_config(cfg: RunConfig, gpus: tuple[Gpu, ...] | None = None) -> dict:
    """The accelerate config file's content for ``cfg.distributed`` (each key: README "More than one machine").
    ``num_processes`` is accelerate's total over every machine; the studio's is per machine."""
    d, t = cfg.distributed, cfg.training
    out = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "mixed_precision":
           "no" if d.mixed_precision == "auto" else d.mixed_precision, "machine_rank": d.machine_rank,
           "num_machines": d.num_machines, "num_processes": world_size(cfg), "main_process_port": d.main_process_port,
           # MULTI_GPU starts the processes with torchrun also on a CPU (MULTI_CPU would need MPI): they join over gloo
           "rdzv_backend": "static", "same_network": True, "use_cpu": False}
    if d.num_machines > 1:
        out["main_process_ip"] = d.main_process_ip.strip()
    ids = chosen_gpus(cfg, gpus)
    if ids:
        out["gpu_ids"] = ",".join(ids)
    if d.backend.startswith("deepspeed"):
        out["distributed_type"] = "DEEPSPEED"
        # the Trainer refuses DeepSpeed values that differ from its own arguments: these two come from training.*
        out["deepspeed_config"] = {"zero_stage": 3 if d.backend == "deepspeed_zero3" else 2,
                                   "gradient_accumulation_steps": t.gradient_accumulation_steps,
                                   "gradient_clipping": t.max_grad_norm, "offload_optimizer_device": "none",
                                   "offload_param_device": "none", "zero3_init_flag": d.backend == "deepspeed_zero3",
                                   "deepspeed_multinode_launcher": "standard"}  # torchrun on each machine, no ssh
        if d.backend == "deepspeed_zero3":
            out["deepspeed_config"]["zero3_save_16bit_model"] = True
    elif d.backend == "fsdp":
        out["distributed_type"] = "FSDP"
        out["fsdp_config"] = {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                              "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_reshard_after_forward": True,
                              "fsdp_offload_params": False, "fsdp_cpu_ram_efficient_loading": False,
                              "fsdp_activation_checkpointing": False}
    return out


def write_accelerate_config(run_dir: Path, cfg: RunConfig) -> Path:
    path = Path(run_dir).absolute() / ACCELERATE_CONFIG
    d = cfg.distributed
    head = (f"# accelerate config written by the studio from the run's `distributed` section ({d.backend}, "
            f"{d.num_processes} process(es) x {d.num_machines} machine(s)).\n"
            f"# Run: accelerate launch --config_file={path} {' '.join(_thread_args(cfg))} -m {TRAIN_MODULE} "
            f"{path.parent / 'config.yaml'} --output-dir={path.parent}\n").replace("  ", " ")
    path.write_text(head + yaml.safe_dump(accelerate_config(cfg), sort_keys=False), encoding="utf-8")
    return path


def _thread_args(cfg: RunConfig) -> list[str]:
    """On the CPU each process gets an equal share of the cores (accelerate's default would be one thread each)."""
    if not on_cpu(cfg):
        return []
    threads = cfg.training.num_threads or max(1, cpu_cores() // cfg.distributed.num_processes)
    return [f"--num_cpu_threads_per_process={threads}"]


def launch_argv(run_dir: Path, cfg: RunConfig, python: str, resume: bool = False) -> list[str]:
    """``accelerate launch`` of the run's own config, every value as ``--opt=value`` (a folder '-x' stays a value)."""
    run_dir = Path(run_dir).absolute()
    argv = [python, "-m", LAUNCH_MODULE, f"--config_file={run_dir / ACCELERATE_CONFIG}", *_thread_args(cfg),
            "-m", TRAIN_MODULE, str(run_dir / "config.yaml"), f"--output-dir={run_dir}"]
    return argv + (["--resume"] if resume else [])


def is_launch_argv(argv: list[str]) -> bool:
    return LAUNCH_MODULE in argv[:3]


# -- inside a training process -----------------------------------------------------------------------------------------


def apply_devices(cfg: RunConfig) -> None:
    """Make this process see the devices the config names, before CUDA starts: none for cpu; for one process started
    without a launcher, the one GPU it uses (accelerate's ``gpu_ids`` already did it for a launched group)."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # the order nvidia-smi shows, which devices= refers to
    if cfg.distributed.devices.strip().lower() == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not under_launcher():
        ids = chosen_gpus(cfg)
        if ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)

