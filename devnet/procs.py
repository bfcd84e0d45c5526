"""Processes of a devnet: nodes (``muxernode run``) and the link proxy (``devnet.proxy``).

Rules: every process is started in its own session (so a Ctrl-C in the terminal reaches
only the devnet command, which then stops the nodes itself), with its own log file; it is
stopped by its pid only, and only after checking that the pid still belongs to that process
(``/proc/<pid>/cmdline`` names the program and its directory), so a recycled pid is never
signalled. A zombie counts as stopped. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devnet.manifest import DevnetError, Manifest, NodeEntry

__all__ = [
    "node_alive",
    "node_command",
    "pid_alive",
    "proxy_alive",
    "run_cli",
    "start_node",
    "start_proxy",
    "stop_pid",
    "wait_rpc_addr",
]

# Popen objects of the processes this devnet command started, so that they can be reaped
_children: dict[int, subprocess.Popen[bytes]] = {}


def run_cli(args: list[str], *, timeout: float = 60.0) -> str:
    """Run ``muxernode ARGS`` to completion (genesis, init); its stdout, or a DevnetError."""
    cmd = [sys.executable, "-m", "muxernode.daemon", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DevnetError(f"`muxernode {' '.join(args)}` did not finish in {timeout:g} s") \
            from None
    if res.returncode != 0:
        raise DevnetError(f"`muxernode {' '.join(args)}` failed (exit {res.returncode}): "
                          f"{(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'
    return stat[stat.rfind(")") + 2 :][:1]


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None, marks: list[str]) -> bool:
    """True iff ``pid`` runs, is not a zombie, and its command line contains every mark."""
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        # our own child: its exit status is the authority (no /proc read, which can lag
        # an exec or a recycled pid on some kernels and sandboxes)
        return proc.poll() is None
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours
    if _proc_state(pid) in ("Z", "X"):
        return False
    cmd = _cmdline(pid)
    if cmd is None:  # no /proc (not Linux): trust the pid
        return True
    joined = "\0".join(cmd)
    return all(m in joined for m in marks)


def node_marks(entry: NodeEntry) -> list[str]:
    return ["muxernode.daemon", "run", str(Path(entry.data_dir))]


def proxy_marks(m: Manifest) -> list[str]:
    return ["devnet.proxy", str(m.dir)]


def node_alive(entry: NodeEntry) -> bool:
    return pid_alive(entry.pid, node_marks(entry))


def node_paused(entry: NodeEntry) -> bool:
    """Stopped by SIGSTOP (``devnet pause``): alive, but answers nothing until resumed."""
    return entry.pid is not None and node_alive(entry) and _proc_state(entry.pid) == "T"


def proxy_alive(m: Manifest) -> bool:
    return pid_alive(m.proxy_pid, proxy_marks(m))


def stop_pid(pid: int | None, marks: list[str], *, sig: int = signal.SIGTERM,
             timeout: float = 15.0) -> str:
    """Signal ``pid`` (SIGTERM by default), wait up to ``timeout``, then SIGKILL.

    Returns "not running", "stopped" (exited after ``sig``) or "killed" (needed SIGKILL)."""
    if pid is None or not pid_alive(pid, marks):
        return "not running"
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return "not running"
    if _wait_gone(pid, marks, timeout):
        return "stopped" if sig != signal.SIGKILL else "killed"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, marks, 10.0):
        raise DevnetError(f"process {pid} survived SIGKILL for 10 s")
    return "killed"


def _wait_gone(pid: int, marks: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, marks):
            return True
        time.sleep(0.05)
    return not pid_alive(pid, marks)


def node_command(entry: NodeEntry) -> list[str]:
    """``muxernode run`` for the node; inside its namespace with --netns (``ip netns exec``
    execs the daemon, so the pid and command line are the daemon's)."""
    cmd = [sys.executable, "-m", "muxernode.daemon", "run", "--data-dir", entry.data_dir,
           "--config", entry.config]
    if entry.clock_offset_s:
        cmd += ["--clock-offset", repr(float(entry.clock_offset_s))]
    if entry.state_sync:  # joins by a snapshot on first start; a no-op once it has blocks
        cmd.append("--state-sync")
    if entry.netns:
        cmd = ["ip", "netns", "exec", entry.netns, *cmd]
    return cmd


def _spawn(cmd: list[str], log_path: Path, cwd: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- devnet: starting {' '.join(cmd)} at "
                  f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def start_node(entry: NodeEntry) -> int:
    """Start the node's process (the caller records the pid and waits for it to serve)."""
    if node_alive(entry):
        raise DevnetError(f"node {entry.name} is already running (pid {entry.pid})")
    Path(entry.data_dir, "rpc.addr").unlink(missing_ok=True)
    pid = _spawn(node_command(entry), Path(entry.log), Path(entry.data_dir))
    entry.pid = pid
    return pid


def wait_rpc_addr(entry: NodeEntry, timeout: float = 30.0) -> None:
    """Wait until the node writes rpc.addr (it serves RPC); fail early if it exits."""
    addr = Path(entry.data_dir, "rpc.addr")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node_alive(entry):
            raise DevnetError(f"node {entry.name} exited during start-up "
                              f"({exit_status(entry.pid or 0)}); "
                              f"last lines of {entry.log}:\n{tail(entry.log, 15)}")
        if addr.exists() and addr.read_text().strip():
            return
        time.sleep(0.05)
    raise DevnetError(f"node {entry.name} did not serve RPC within {timeout:g} s; "
                      f"last lines of {entry.log}:\n{tail(entry.log, 15)}")


PROXY_NICE = -10  # the link proxy's niceness when root: ahead of the nodes (at 0)


def start_proxy(m: Manifest, timeout: float = 15.0) -> int:
    """Start the link proxy and wait until it listens on every link (state.json says so)."""
    from devnet import proxy

    if proxy_alive(m):
        return m.proxy_pid or 0
    state = m.proxy_dir / proxy.STATE_FILE
    state.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "devnet.proxy", "--dir", str(m.dir)]
    if os.geteuid() == 0:
        # The proxy stands in for the wire: when the nodes take every core (21 of them on
        # 2), a proxy at their priority waits for CPU and adds latency no network has
        # (block propagation under load rose to seconds). Root runs it ahead of them;
        # without root it runs at theirs (a process may not raise its own priority).
        cmd = ["nice", "-n", str(PROXY_NICE), *cmd]
    pid = _spawn(cmd, m.proxy_dir / "proxy.log", m.dir)
    m.proxy_pid = pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, proxy_marks(m)):
            raise DevnetError(f"the link proxy exited during start-up ({exit_status(pid)}); "
                              "last lines of "
                              f"{m.proxy_dir / 'proxy.log'}:\n"
                              f"{tail(str(m.proxy_dir / 'proxy.log'), 15)}")
        st = proxy.read_state(m.proxy_dir)
        if st is not None and st.get("listening"):
            return pid
        time.sleep(0.05)
    raise DevnetError(f"the link proxy did not listen within {timeout:g} s; see "
                      f"{m.proxy_dir / 'proxy.log'}")


def exit_status(pid: int) -> str:
    """How a child this command started ended: "exit N" or "killed by SIGX"."""
    proc = _children.get(pid)
    code = proc.poll() if proc is not None else None
    if code is None:
        return "exit status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def tail(path: str | Path, n: int) -> str:
    """The last ``n`` lines of a text file ('' if missing); reads at most 1 MiB."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 20)))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""
