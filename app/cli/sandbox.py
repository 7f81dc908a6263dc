"""`qaas sandbox up|down|status|kubeconfig`: the local Kubernetes control plane for workstations
and tests (see app/sandbox)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a sandbox command runs: `qaas serve` needs none of it
    from app.sandbox.handle import Sandbox


def _default() -> Sandbox:
    from app.sandbox.handle import Sandbox  # lazily: see above

    return Sandbox.default()


def _up(args: argparse.Namespace) -> int:
    sandbox = _default()
    try:
        state = sandbox.up(
            progress=lambda line: print(line, flush=True),
            nodes=args.nodes,
            runtime=args.runtime,
            max_process_pods=args.max_process_pods,
        )
    except KeyboardInterrupt:
        print("interrupted: the sandbox was stopped", file=sys.stderr)
        return 130
    print(f"kubectl works with: export KUBECONFIG={state.kubeconfig}")
    print(state.kubeconfig)
    return 0


def _down(_: argparse.Namespace) -> int:
    stopped = _default().down()
    print("sandbox stopped" if stopped else "no sandbox was running")
    return 0


def _status(_: argparse.Namespace) -> int:
    state = _default().state()
    if state is None:
        print("no sandbox is running (start one with: qaas sandbox up)")
        return 3
    print(f"sandbox {state.status} at {state.server} (supervisor pid {state.supervisor_pid})")
    for name, pid in sorted(state.pids.items()):
        print(f"  {name:<24} pid {pid}")
    for node in state.raw.get("nodes", []):
        print(f"  {'simulated kubelet':<24} node {node}")
    print(f"  kubeconfig               {state.kubeconfig}")
    return 0


def _kubeconfig(_: argparse.Namespace) -> int:
    state = _default().state()
    if state is None:
        print("no sandbox is running (start one with: qaas sandbox up)", file=sys.stderr)
        return 3
    print(state.kubeconfig)
    return 0


def add_sandbox_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser("sandbox", help="a local Kubernetes control plane")
    actions = sandbox.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="build (first time) and start it in the background")
    up.add_argument("--nodes", type=int, default=1, help="simulated nodes (default 1)")
    up.add_argument(
        "--runtime",
        choices=("process", "simulated"),
        default="process",
        help="what pods of known images run as, unless they or their namespace say "
        "(annotation or label sandbox.qaas.dev/runtime; default process)",
    )
    up.add_argument(
        "--max-process-pods",
        type=int,
        default=16,
        help="process pods per node; more run simulated (default 16, ~130 MiB each for QNM)",
    )
    up.set_defaults(handler=_up)
    actions.add_parser("down", help="stop it").set_defaults(handler=_down)
    actions.add_parser("status", help="say what runs").set_defaults(handler=_status)
    actions.add_parser("kubeconfig", help="print its kubeconfig's path").set_defaults(
        handler=_kubeconfig
    )
