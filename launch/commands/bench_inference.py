"""``karakuri bench inference``: single-sample latency of a policy file, next to torch.

Times one batch-of-one call at a time (``time.perf_counter_ns``, GC off, after warm-up), the
methods interleaved in chunks so that load from other processes hits them alike:

- ``OnnxPolicy.act``: the edge runtime as the control loop calls it (input checks,
  preallocated buffers bound by IOBinding, ``last_action`` fed back), 1 intra-op thread;
- ``ORT session.run``: plain ``InferenceSession.run`` on the same session settings, the
  baseline one writes first;
- ``torch eager`` and ``TorchScript`` (traced, frozen), 1 thread, when torch is importable:
  the same network, rebuilt from the file's graph and weights (or, with ``--mlp``, the
  module the file was exported from).

``--mlp 256,128,64`` builds a synthetic 7-joint policy file with that actor (needs torch)
and benches it.  On an edge box without torch only the onnxruntime rows are printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from karakuri.launch.cli import usage_error
from karakuri.launch.cli_config import add_dataclass_args, dataclass_from_args
from karakuri.policies.onnx_policy import OnnxPolicy
from karakuri.robot.policy import PolicyError

# Targets of issue 3 for a 256-128-64 MLP on the reference machine.
TARGET_P50_US, TARGET_P99_US, TARGET_EAGER_RATIO = 20.0, 100.0, 3.0


@dataclass(frozen=True)
class BenchInferenceConfig:
    """Settings of ``karakuri bench inference``.

    Attributes:
        policy: Policy file to bench (or where to write the ``--mlp`` one; default a temp file).
        mlp: Build a synthetic policy with these hidden sizes first, e.g. ``256,128,64``.
        iters: Timed calls per method.
        warmup: Untimed calls per method first.
        threads: Intra-op threads of onnxruntime and torch.
        providers: onnxruntime execution providers in order (default: TensorRT, CUDA, CPU).
        torch: Also time torch eager and TorchScript when torch is importable.
    """

    policy: Path | None = None
    mlp: str = ""
    iters: int = 20000
    warmup: int = 2000
    threads: int = 1
    providers: tuple[str, ...] = ()
    torch: bool = True

    def __post_init__(self) -> None:
        if self.policy is None and not self.mlp:
            raise ValueError("give a policy file, or --mlp 256,128,64 to bench a synthetic one")
        if self.iters < 1000 or self.warmup < 0 or self.threads < 1:
            raise ValueError(f"iters must be >= 1000 (for p99.9), warmup >= 0, threads >= 1; "
                             f"got {self.iters}, {self.warmup}, {self.threads}")
        _ = self.hidden

    @property
    def hidden(self) -> tuple[int, ...]:
        """``mlp`` as integers."""
        try:
            sizes = tuple(int(s) for s in self.mlp.split(",") if s.strip())
        except ValueError:
            raise ValueError(f"--mlp {self.mlp!r}: expected comma-separated sizes, "
                             f"e.g. 256,128,64") from None
        if any(s <= 0 for s in sizes):
            raise ValueError(f"--mlp {self.mlp!r}: sizes must be > 0")
        return sizes


def synthetic_policy(hidden: tuple[int, ...], path: Path) -> Any:
    """Write a 7-joint reach-like policy file with an MLP actor of ``hidden``; the module.

    Signals joint_pos (7), joint_vel (7), command (3), last_action (7): observation 24,
    normalizer, tanh MLP, joint-position-delta action map.  Needs torch.
    """
    import torch

    from karakuri.policies.export import (
        ActionMap,
        Normalizer,
        ObsTerm,
        build_policy_module,
        export_policy,
        make_metadata,
    )
    from karakuri.robot.spec import RobotSpec

    n = 7
    names = tuple(f"joint_{i}" for i in range(n))
    spec = RobotSpec(name="bench_arm", joint_names=names, lower=np.full(n, -3.0),
                     upper=np.full(n, 3.0), velocity_limit=np.full(n, 3.0),
                     effort_limit=np.full(n, 50.0), accel_limit=np.full(n, 10.0),
                     default_pose=np.zeros(n), kp=np.full(n, 100.0), kd=np.full(n, 5.0),
                     arm_joints=names)
    terms = [ObsTerm("joint_pos_rel", "joint_pos", n, offset=spec.default_pose),
             ObsTerm("joint_vel", "joint_vel", n, scale=0.1),
             ObsTerm("command", "command", 3), ObsTerm("last_action", "last_action", n)]
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = 3 * n + 3
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
        width = h
    actor = torch.nn.Sequential(*layers, torch.nn.Linear(width, n))
    rng = np.random.default_rng(0)
    norm = Normalizer(rng.normal(size=3 * n + 3), rng.uniform(0.5, 2.0, 3 * n + 3))
    am = ActionMap.for_robot(spec, "joint_position_delta", 0.1, clip_action=(-1.0, 1.0))
    module = build_policy_module(terms, norm, actor, am)
    print(export_policy(module, path, make_metadata(module, spec, task="bench"), n_random=64))
    return module


def torch_from_onnx(path: Path) -> Any:
    """The file's graph as a torch module (a node-by-node interpreter; common ops only).

    Raises:
        NotImplementedError: the graph has an op this interpreter does not know.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(path)
    f = torch.nn.functional
    binary = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
              "MatMul": torch.matmul, "Max": torch.maximum, "Min": torch.minimum}
    unary = {"Tanh": torch.tanh, "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Neg": torch.neg,
             "Sqrt": torch.sqrt, "Identity": lambda x: x, "Softplus": f.softplus}
    ops = {n.op_type for n in model.graph.node}
    known = set(binary) | set(unary) | {"Gemm", "Concat", "Clip", "Elu", "Flatten"}
    if ops - known:
        raise NotImplementedError(f"ops {sorted(ops - known)} are not rebuilt in torch")

    class Rebuilt(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inputs = [i.name for i in model.graph.input]
            self.outputs = [o.name for o in model.graph.output]
            self.consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                           for t in model.graph.initializer}
            self.nodes = [(n.op_type, list(n.input), list(n.output),
                           {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
                          for n in model.graph.node]

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            env: dict[str, torch.Tensor] = {**self.consts, **dict(zip(self.inputs, xs,
                                                                       strict=True))}
            for op, ins, outs, at in self.nodes:
                a = [env[i] if i else None for i in ins]
                if op in binary:
                    y = binary[op](a[0], a[1])
                elif op in unary:
                    y = unary[op](a[0])
                elif op == "Gemm":
                    w = a[1].T if at.get("transB", 0) else a[1]
                    y = at.get("alpha", 1.0) * (a[0] @ w)
                    y = y + at.get("beta", 1.0) * a[2] if len(a) > 2 else y
                elif op == "Concat":
                    y = torch.cat(a, dim=at["axis"])
                elif op == "Clip":
                    y = torch.clamp(a[0], *(a[1:] + [None] * (3 - len(a))))
                elif op == "Elu":
                    y = f.elu(a[0], at.get("alpha", 1.0))
                else:  # Flatten
                    y = torch.flatten(a[0], at.get("axis", 1))
                env[outs[0]] = y
            return tuple(env[o] for o in self.outputs)

    return Rebuilt().eval()


def _time(methods: dict[str, Callable[[], object]], iters: int, warmup: int
          ) -> dict[str, np.ndarray]:
    """Per-call ns of each method; interleaved in chunks of 500 calls, GC off."""
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times = {name: np.empty(iters, np.int64) for name in methods}
    clock = time.perf_counter_ns
    chunk = 500
    was = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, iters, chunk):
            stop = min(start + chunk, iters)
            for name, fn in methods.items():
                out = times[name]
                for i in range(start, stop):
                    t0 = clock()
                    fn()
                    out[i] = clock() - t0
    finally:
        if was:
            gc.enable()
    return times


def run(args: argparse.Namespace) -> int:
    """Bench and print; returns 0 (2 on bad arguments)."""
    try:
        cfg = dataclass_from_args(BenchInferenceConfig, args)
    except ValueError as e:
        return usage_error("bench inference", e)
    if cfg.policy is not None and not cfg.mlp and not cfg.policy.is_file():
        what = "is a directory" if cfg.policy.is_dir() else "does not exist"
        return usage_error("bench inference", f"policy file {cfg.policy} {what}")
    with tempfile.TemporaryDirectory() as tmp:
        path = cfg.policy or Path(tmp) / f"mlp_{'_'.join(map(str, cfg.hidden))}.onnx"
        try:
            module = synthetic_policy(cfg.hidden, path) if cfg.mlp else None
            policy = OnnxPolicy(path, providers=list(cfg.providers) or None,
                                intra_op_threads=cfg.threads)
        except (PolicyError, OSError) as e:  # not ONNX, not ours, unreadable, unwritable
            return usage_error("bench inference", e)
        return _bench(cfg, policy, path, module)


def _bench(cfg: BenchInferenceConfig, policy: OnnxPolicy, path: Path, module: Any) -> int:
    meta = policy.metadata
    rng = np.random.default_rng(0)
    sig = {n: rng.uniform(-0.5, 0.5, (1, meta.input_size(n))).astype(np.float32)
           for n in policy.input_names}
    loop_sig = {n: v for n, v in sig.items() if n not in meta.feedback}
    session = policy.session  # the same session settings as the runtime
    names = [meta.output, *dict.fromkeys(meta.feedback.values())]
    methods: dict[str, Callable[[], object]] = {
        "OnnxPolicy.act": lambda: policy.act(loop_sig),
        "ORT session.run": lambda: session.run(names, sig),
    }
    notes = _torch_methods(cfg, path, module, sig, session, names, methods)
    print(f"karakuri bench inference: {path.name} ({len(meta.inputs)} inputs -> "
          f"{meta.output} {meta.n_joints}), batch 1, {cfg.iters} calls each after "
          f"{cfg.warmup} warm-up, {cfg.threads} thread(s), {os.cpu_count()} CPUs")
    print(f"onnxruntime {ort.__version__}, provider {policy.provider}; {notes}")
    times = _time(methods, cfg.iters, cfg.warmup)
    pct = {n: np.percentile(t, [50, 99, 99.9]) / 1e3 for n, t in times.items()}
    print(f"{'':18s}{'p50 us':>10s}{'p99 us':>10s}{'p99.9 us':>10s}{'max us':>10s}")
    for name, (p50, p99, p999) in pct.items():
        print(f"{name:18s}{p50:10.1f}{p99:10.1f}{p999:10.1f}{times[name].max() / 1e3:10.1f}")
    act50, act99 = pct["OnnxPolicy.act"][:2]
    ratios = [f"{name} / OnnxPolicy.act = {pct[name][0] / act50:.2f}x"
              for name in pct if name != "OnnxPolicy.act"]
    print("ratios at p50: " + "; ".join(ratios))
    if cfg.hidden != (256, 128, 64):
        return 0
    line = (f"targets (issue 3, 256-128-64 MLP): p50 {act50:.1f} <= {TARGET_P50_US:g} us: "
            f"{'yes' if act50 <= TARGET_P50_US else 'NO'}; p99 {act99:.1f} <= "
            f"{TARGET_P99_US:g} us: {'yes' if act99 <= TARGET_P99_US else 'NO'}")
    if "torch eager" in pct:
        ratio = pct["torch eager"][0] / act50
        line += (f"; >= {TARGET_EAGER_RATIO:g}x faster than torch eager: "
                 f"{'yes' if ratio >= TARGET_EAGER_RATIO else 'NO'} ({ratio:.1f}x)")
    print(line)
    return 0


def _torch_methods(cfg: BenchInferenceConfig, path: Path, module: Any,
                   sig: dict[str, np.ndarray], session: Any, names: list[str],
                   methods: dict[str, Callable[[], object]]) -> str:
    """Add the torch rows to ``methods``; a note saying what torch is (or why it is absent)."""
    if not cfg.torch:
        return "torch rows off (--no-torch)"
    try:
        import torch
    except ImportError:
        return "torch is not installed here: onnxruntime only"
    torch.set_num_threads(cfg.threads)
    try:
        net = module if module is not None else torch_from_onnx(path)
    except (ImportError, NotImplementedError) as e:
        return f"torch rows skipped: {e}"
    origin = "the exported module" if module is not None else "rebuilt from the file's graph"
    net = net.cpu().eval()
    xs = tuple(torch.from_numpy(sig[n]) for n in (i.name for i in session.get_inputs()))
    with torch.inference_mode():
        want = session.run(names, sig)
        got = net(*xs)
        err = max(float(np.abs(g.numpy() - w).max()) for g, w in zip(got, want, strict=False))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in 2.x
        scripted = torch.jit.freeze(torch.jit.trace(net, xs, check_trace=False).eval())

    def eager() -> object:
        with torch.inference_mode():
            return net(*xs)

    def script() -> object:
        with torch.inference_mode():
            return scripted(*xs)

    methods["torch eager"] = eager
    methods["TorchScript"] = script
    return f"torch {torch.__version__} ({origin}; max |torch - ORT| {err:.1e})"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench inference``."""
    p = sub.add_parser("inference", help="policy-file latency: onnxruntime next to torch",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", nargs="?", type=Path, default=None,
                   help="policy file (with --mlp: where to write the synthetic one)")
    add_dataclass_args(p, BenchInferenceConfig, skip=("policy",))
    p.set_defaults(func=run)
