"""perception-run: start the nodes a graph YAML describes as separate processes (for the pip environment).

``ros2 launch`` (from the Docker image) and this command read the same YAML
file; use ``ros2 launch`` where ``launch_ros`` exists, this command where it
does not. Each node's output is prefixed with its name; Ctrl-C, SIGTERM or SIGHUP
(a closed terminal) stops them all, and if perception-run itself is killed the
kernel stops its nodes (Linux): none outlives it. ``--respawn NODES`` starts the
named nodes again whenever they exit (as launch's ``respawn``). Exit status: 0 when
every node ended cleanly, 1 when one failed or was killed (each is named in the output).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from perception_nodes.dds import configure_fastdds
from perception_nodes.graph import GraphError, apply_overrides, load_graph
from perception_nodes.processes import ManagedProcess, stop_all


def _how_it_ended(code: int) -> str:
    """``"exited with code N"`` or ``"was killed by SIGNAME"`` for a child's return code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def _respawn_keys(option: str, specs) -> set[str]:
    wanted = {w.strip() for w in option.split(",") if w.strip()}
    return {s.key for s in specs if "all" in wanted or s.key in wanted or s.executable in wanted}


def _start(spec, params: Path, lock: threading.Lock) -> ManagedProcess:
    cmd = [spec.executable, *spec.ros_args(params)]
    print(f"perception-run: starting {spec.key}: {' '.join(cmd)}", flush=True)
    proc = ManagedProcess(cmd, name=spec.key)
    threading.Thread(target=_pump, args=(spec.key, proc.stdout, lock), daemon=True).start()
    return proc


def _pump(prefix: str, stream, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"[{prefix}] {raw.decode(errors='replace')}")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perception-run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graph", type=Path, help="graph YAML (a ROS 2 parameters file), e.g. config/robot.yaml")
    parser.add_argument("--only", default="", help="comma-separated node keys or executables to start (default all)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE",
                        help="override a parameter, e.g. --set /camera/camera_node.source=clip.mp4 (repeatable)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop everything after this many seconds (0 = run)")
    parser.add_argument("--exit-on-failure", action="store_true", help="stop all nodes when one exits with an error")
    parser.add_argument("--respawn", default="", metavar="NODES",
                        help="comma-separated node keys or executables to start again whenever they exit (like "
                             "launch's respawn), or 'all'")
    parser.add_argument("--respawn-delay", type=float, default=2.0, help="seconds before a respawn (default 2)")
    parser.add_argument("--respawn-max", type=int, default=0, help="respawns per node at most (0 = no limit)")
    args = parser.parse_args(argv)
    if args.respawn_delay < 0 or args.respawn_max < 0:
        parser.error("--respawn-delay and --respawn-max must be >= 0")

    tmp = Path(tempfile.mkdtemp(prefix="perception-run-"))
    atexit.register(shutil.rmtree, tmp, True)  # also when an argument error ends the run below
    try:
        params = apply_overrides(args.graph, args.set, tmp / "params.yaml") if args.set else args.graph.resolve()
        specs = load_graph(params)
    except GraphError as exc:
        parser.error(str(exc))
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        specs = [s for s in specs if s.key in wanted or s.executable in wanted]
        if not specs:
            parser.error(f"--only {args.only!r} matches no node of {args.graph}")
    missing = [s.executable for s in specs if shutil.which(s.executable) is None]
    if missing:
        parser.error(f"executables not on PATH: {missing}; run `make setup` and `source scripts/env.sh` first")

    _, dds_message = configure_fastdds()  # the nodes inherit it (and would apply it themselves)
    print(f"perception-run: {dds_message}", flush=True)
    discovery = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(unset: SUBNET)")
    print(f"perception-run: {len(specs)} node(s) from {args.graph}; ROS_DOMAIN_ID="
          f"{os.environ.get('ROS_DOMAIN_ID', '0')}, discovery range {discovery}", flush=True)
    lock = threading.Lock()
    respawn = _respawn_keys(args.respawn, specs)
    if args.respawn and not respawn:
        parser.error(f"--respawn {args.respawn!r} matches no node of {args.graph}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed, the SSH link dropped
        signal.signal(sig, lambda *_: stop.set())  # before any node starts: a signal never leaves one behind
    procs = [_start(spec, params, lock) for spec in specs]
    by_name = {spec.key: spec for spec in specs}
    respawns: dict[str, int] = {}
    due: dict[str, float] = {}  # node key -> when it starts again
    start = time.monotonic()
    rc = 0
    reported: set[str] = set()
    while not stop.is_set():
        if args.duration and time.monotonic() - start >= args.duration:
            break
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is not None and proc.name not in reported:
                reported.add(proc.name)
                print(f"perception-run: {proc.name} {_how_it_ended(code)}", flush=True)
                if code != 0:
                    rc = 1
                    if args.exit_on_failure:
                        stop.set()
                if proc.name in respawn and (not args.respawn_max or respawns.get(proc.name, 0) < args.respawn_max):
                    due[proc.name] = time.monotonic() + args.respawn_delay
            if proc.name in due and time.monotonic() >= due[proc.name] and not stop.is_set():
                del due[proc.name]
                respawns[proc.name] = respawns.get(proc.name, 0) + 1
                print(f"perception-run: respawning {proc.name} ({respawns[proc.name]})", flush=True)
                procs[i] = _start(by_name[proc.name], params, lock)
                reported.discard(proc.name)
        if len(reported) == len(procs) and not due:
            break
        stop.wait(0.2)
    stop_all(procs, grace=10.0, on_escalate=lambda p, sig: print(
        f"perception-run: {p.name} did not stop; sending {sig}", flush=True))
    for proc in procs:  # a node that failed while stopping, or had to be killed, makes the run a failure
        code = proc.poll()
        if proc.name not in reported and code not in (0, None):
            print(f"perception-run: {proc.name} {_how_it_ended(code)} while stopping", flush=True)
            rc = 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
