#!/usr/bin/env python3
"""Re-runs the sessions that the lessons show, and rewrites or checks them.

A captured block in a chapter is marked by a comment line right before its
fence:

    <!-- capture: ch04-event-head -->
    ```text
    ...
    ```

The name is a recipe below. Each recipe starts what it needs (a server on
127.0.0.1 and a port the kernel picked, gdb, curl, a client), does what the
chapter says was done, and returns the text of the block. What the
toolchain or the moment decides is then made the same every time (see
`normalise`), and what our own source decides is kept exactly: a line
number in src/ that moved, a function renamed, a byte that changed, makes
the block differ.

    capture.py                rewrite every marked block in lessons/
    capture.py --check        exit 1, with a diff per block, if any differs
    capture.py --only NAME    just these recipes (repeatable)

Run it through capture.sh, which installs gdb and curl and builds first.
"""

import argparse
import difflib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
SERVER = ROOT / "target/debug/realtime-by-hand"
WS_CLIENT = ROOT / "target/debug/ws-client"
# The port the chapters show, so that their commands can be pasted: it is
# `cargo run`'s default. The port a capture really used is replaced by it.
SHOWN_PORT = 3000
MARK = re.compile(r"^<!-- capture: ([a-z0-9-]+) -->$")

RECIPES = {}


def recipe(*names):
    """A recipe makes the blocks of one session: one name, one text; or
    several names, and a tuple of as many texts."""

    def register(function):
        for i, name in enumerate(names):
            RECIPES[name] = (function, i, len(names))
        return function

    return register


# --- processes: each one started is recorded, and stopped by its pid -------

STARTED = []  # Popen objects
CLIENT_PIDS = []  # files into which gdb's `shell` lines wrote the pids of clients


def start(args, **kwargs):
    process = subprocess.Popen(args, **kwargs)
    STARTED.append(process)
    return process


def stop(process):
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def stop_everything():
    for process in STARTED:
        stop(process)
    for pid_file in CLIENT_PIDS:
        try:
            pids = Path(pid_file).read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def wait_for(predicate, timeout, what, output=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    shown = f"; the output so far:\n{output()}" if output else ""
    raise RuntimeError(f"timed out waiting for {what}{shown}")


LISTENING = re.compile(r"Server listening on http://127\.0\.0\.1:(\d+)/")


class Server:
    """The server, started directly, on a port the kernel picks."""

    def __init__(self, ctx, *flags):
        self.ctx = ctx
        # One log per server: a recipe may start several.
        self.log_path = ctx.path(f"server{len(ctx.servers) or ''}.log")
        self.log_file = open(self.log_path, "wb")
        self.process = start(
            [str(SERVER), "--host", "127.0.0.1", "--port", "0", *flags],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        match = wait_for(
            lambda: LISTENING.search(self.log_path.read_text(errors="replace")),
            10,
            "the server to listen",
        )
        self.port = int(match.group(1))
        ctx.ports.append(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self):
        """The server's log lines, without its start-up banner."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [l for l in lines if l.startswith("client ")]

    def stop(self):
        stop(self.process)
        self.log_file.close()


class Gdb:
    """A gdb session in batch mode: the commands are written to a file
    first, shown ones echoed as `(gdb) COMMAND` before they run. `shell`
    lines start clients in the background; `{url}` in them is the server's
    address, read from a file the harness writes when the server listens."""

    def __init__(self, ctx, program=None, args=None, server_flags=(), debugger="rust-gdb"):
        self.debugger = debugger
        self.ctx = ctx
        self.dir = ctx.path("gdb")
        self.dir.mkdir()
        self.lines = ["set pagination off", "set width 0", "set confirm off"]
        self.program = str(program or SERVER)
        if args is None:
            args = ["--host", "127.0.0.1", "--port", "0", *server_flags]
        self.args = args
        self.port = None
        CLIENT_PIDS.append(str(self.dir / "pids"))

    def cmd(self, command, show=True):
        if show:
            shown = command.replace("\\", "\\\\").replace('"', '\\"')
            self.lines.append(f"echo (gdb) {shown}\\n")
        self.lines.append(command)

    def raw(self, text):
        self.lines.extend(text.strip("\n").split("\n"))

    def client(self, command):
        """A client, started in the background from gdb's `shell`."""
        command = command.replace("{url}", f"http://127.0.0.1:$(cat {self.dir}/port)")
        command = command.replace("{ws}", f"ws://127.0.0.1:$(cat {self.dir}/port)")
        self.lines.append(
            f"shell {command} >>{self.dir}/clients.log 2>&1 & echo $! >>{self.dir}/pids"
        )

    def pause(self, seconds):
        self.lines.append(f"shell sleep {seconds}")

    def interrupt(self):
        """Stops the program being debugged, as Ctrl-C would: gdb then goes
        on with the commands after the `run` or `continue` it was in."""
        for child in children_of(self.process.pid):
            os.kill(child, signal.SIGINT)

    def run(self, when_listening=None, timeout=20):
        script = self.dir / "script.gdb"
        script.write_text("\n".join(self.lines) + "\n")
        out_path = self.dir / "out.txt"
        out = open(out_path, "wb")
        process = self.process = start(
            [self.debugger, "-q", "-batch", "-nx", "-x", str(script), "--args", self.program, *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            if when_listening is not None:
                match = wait_for(
                    lambda: LISTENING.search(out_path.read_text(errors="replace")),
                    20,
                    "the server under gdb to listen",
                    lambda: out_path.read_text(errors="replace"),
                )
                self.port = int(match.group(1))
                self.ctx.ports.append(self.port)
                (self.dir / "port").write_text(str(self.port))
                when_listening(f"http://127.0.0.1:{self.port}")
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"gdb did not finish in {timeout} s; its output:\n" + out_path.read_text(errors="replace")
                ) from None
        finally:
            # gdb kills what it debugs as it exits; a gdb still running
            # is stopped, and so is its inferior, by their pids.
            if process.poll() is None:
                for child in children_of(process.pid):
                    try:
                        os.kill(child, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            stop(process)
            out.close()
        return out_path.read_text(errors="replace")


def children_of(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


class Context:
    """What one recipe started and used: a directory, the ports."""

    def __init__(self, name):
        self.dir = Path(tempfile.mkdtemp(prefix=f"capture-{name}-"))
        self.ports = []
        self.servers = []
        self.first_process = len(STARTED)

    def path(self, name):
        return self.dir / name

    def server(self, *flags):
        server = Server(self, *flags)
        self.servers.append(server)
        return server

    def gdb(self, **kwargs):
        return Gdb(self, **kwargs)

    def close(self):
        for server in self.servers:
            server.stop()
        for process in STARTED[self.first_process :]:
            stop(process)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


# --- clients ----------------------------------------------------------------


def run(args, timeout=20, input=None, **kwargs):
    """Runs a command to its end and returns its standard output as text."""
    process = start(
        args,
        stdout=subprocess.PIPE,
        stderr=kwargs.pop("stderr", subprocess.DEVNULL),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        **kwargs,
    )
    out, err = process.communicate(input=input.encode() if input else None, timeout=timeout)
    text = out.decode(errors="replace")
    if err:
        text += err.decode(errors="replace")
    return text


def post(url, message, **fields):
    body = json.dumps({"message": message, **fields}, separators=(",", ":"))
    return run(
        ["curl", "-s", "-m", "5", "-X", "POST", "-H", "Content-Type: application/json", "-d", body, f"{url}/trigger-event"]
    )


def background(args, out_path):
    out = open(out_path, "wb")
    return start(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def shown_command(args):
    """A command line as a reader would type it, quoted for sh."""
    words = []
    for arg in args:
        if re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", arg):
            words.append(arg)
        else:
            words.append("'" + arg.replace("'", "'\\''") + "'")
    return " ".join(words)


# --- normalising what the toolchain or the moment decides -------------------

STD_PATH = re.compile(
    r"(?:/rustc/[0-9a-f]+/|\S*/\.rustup/toolchains/[^/\s]+/lib/rustlib/src/rust/)?library/(\w+)/src/"
)
LINE_OUTSIDE_OURS = re.compile(r"(\bat (?!src/|tests/)[^\s:()]+\.(?:rs|c|S|h)):\d+")
ADDRESS = re.compile(r"\b0x[0-9a-f]{5,}\b")
LWP = re.compile(r"\(LWP \d+\)")
PROCESS = re.compile(r"\(process \d+\)")
TIMESTAMP = re.compile(r"\b(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z")
FINISHED = re.compile(r"\b(finished|target\(s\)) in \d+(?:\.\d+)?s\b")
TEST_BINARY = re.compile(r"(realtime_by_hand-)[0-9a-f]{16}\b")
CURL_VERSION = re.compile(r"\bcurl/\d+\.\d+\.\d+")
# The clock the captures show: the earliest timestamp of a block becomes
# this, the others keep their distance from it, to the second.
CLOCK_BASE = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)


def rebase_timestamps(text):
    found = [datetime.fromisoformat(t + "+00:00") for t in TIMESTAMP.findall(text)]
    if not found:
        return text
    earliest = min(found)

    def shown(match):
        moment = datetime.fromisoformat(match.group(1) + "+00:00")
        seconds = round((moment - earliest).total_seconds())
        return (CLOCK_BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    return TIMESTAMP.sub(shown, text)


def realign_info_threads(lines):
    """`info threads` pads its Target Id column to the longest entry, which
    a thread id of another length changes; padded again here."""
    row = re.compile(r'^([* ]) +(\d+) +(Thread 0x… \(LWP …\) "[^"]*") +(.*)$')
    rows = [row.match(l) for l in lines]
    width = max([len(m.group(3)) for m in rows if m] + [0])
    out = []
    for line, m in zip(lines, rows):
        if m:
            out.append(f"{m.group(1)} {m.group(2):<4} {m.group(3):<{width}} {m.group(4)}")
        elif re.match(r"^ +Id +Target Id +Frame", line):
            out.append(f"  {'Id':<4} {'Target Id':<{width}} Frame")
        else:
            out.append(line)
    return out


def normalise(text, ports):
    for port in ports:
        text = re.sub(rf"\b(127\.0\.0\.1|localhost):{port}\b", rf"\g<1>:{SHOWN_PORT}", text)
    text = STD_PATH.sub(lambda m: f"…/{m.group(1)}/", text)
    text = LINE_OUTSIDE_OURS.sub(r"\1", text)
    text = ADDRESS.sub("0x…", text)
    text = LWP.sub("(LWP …)", text)
    text = PROCESS.sub("(process …)", text)
    text = FINISHED.sub(r"\1 in …s", text)
    text = TEST_BINARY.sub(r"\1HASH", text)
    text = CURL_VERSION.sub("curl/…", text)
    text = rebase_timestamps(text)
    lines = [l.rstrip() for l in text.split("\n")]
    lines = realign_info_threads(lines)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


# --- helpers for gdb output -------------------------------------------------


def gdb_lines(output):
    """gdb's output without its start-up noise and the server's banner."""
    noise = (
        "warning: Missing auto-load script",
        "of file /",
        "Use `info auto-load",
        "[Thread debugging using libthread_db",
        'Using host libthread_db library "',
        "Server listening on ",
        "  demo page: ",
        "  SSE stream: ",
        "  WebSocket: ",
        "  trigger: ",
        "  limits: ",
        "[Inferior 1 (process",
    )
    return [l for l in output.split("\n") if not l.startswith(noise)]


def frames_up_to(lines, last):
    """Keeps a backtrace's frames up to the one whose text holds `last`,
    and marks the rest as left out."""
    out = []
    skipping = False
    for line in lines:
        if skipping:
            if re.match(r"^#\d+ ", line):
                continue
            skipping = False
        out.append(line)
        if re.match(r"^#\d+ ", line) and last in line:
            out.append("...")
            skipping = True
    return out


def between(lines, first, last=None):
    """The lines from the first that starts with `first` to the one that
    starts with `last` (both kept)."""
    start = next(i for i, l in enumerate(lines) if l.startswith(first))
    if last is None:
        return lines[start:]
    end = next(i for i, l in enumerate(lines) if i > start and l.startswith(last))
    return lines[start : end + 1]


def source_line(path, text, after=None):
    """The number of the first line of src/`path` that holds `text`
    (after the line that holds `after`, if given)."""
    lines = (ROOT / path).read_text().split("\n")
    start = 0
    if after is not None:
        start = next(i for i, l in enumerate(lines) if after in l)
    return next(i + 1 for i, l in enumerate(lines) if i >= start and text in l)


# Server flags for a process that is going to sit at breakpoints (lesson 16).
PATIENT = [
    "--tick-secs", "0",
    "--head-timeout-secs", "600", "--idle-timeout-secs", "600", "--write-timeout-secs", "600",
]

# --- the recipes: one per marked block ------------------------------------


def hit_line(line):
    return " hit Breakpoint " in line


def short_args(line):
    """A frame or stop line with its argument list cut to `(...)`."""
    return re.sub(r" \((?:[^()]|\([^()]*\))*\) at ", " (...) at ", line, count=1)


def cut_field(text, field):
    """`field: {...}` with the braces' contents replaced by `…`."""
    out, i = [], 0
    key = f"{field}: "
    while True:
        j = text.find(key, i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        k = j + len(key)
        depth = 0
        m = k
        while m < len(text):
            if text[m] in "{(":
                depth += 1
            elif text[m] in "})":
                if depth == 0:
                    break
                depth -= 1
                if depth == 0:
                    m += 1
                    break
            elif text[m] == "," and depth == 0:
                break
            m += 1
        out.append(text[i:k] + "…")
        i = m


def only_our_frames(lines):
    """A backtrace with the standard library's frames left out, and the
    frame numbers (which count those frames) too."""
    out = []
    skipped = False
    for line in lines:
        m = re.match(r"^#\d+ +(?:0x[0-9a-f]+ in )?(.*)$", line)
        if not m:
            out.append(line)
            continue
        if " at src/" in line:
            if skipped:
                out.append("   ...")
                skipped = False
            out.append(f"#…  {m.group(1)}")
        else:
            skipped = True
    if skipped:
        out.append("   ...")
    return out


@recipe("ch04-event-head")
def ch04_event_head(ctx):
    line = source_line("src/sse/format.rs", "Some(head)", after="pub fn event_head")
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::sse::format::event_head", show=False)
    g.cmd("run", show=False)
    g.cmd("bt 4")
    g.cmd(f"break src/sse/format.rs:{line}")
    g.cmd("continue")
    g.cmd("p head")
    g.cmd("kill", show=False)
    lines = gdb_lines(g.run(lambda url: post(url, "hello")))
    lines = [l for l in lines if l and not l.startswith("[")]
    lines = lines[lines.index(next(l for l in lines if hit_line(l))):]
    first = lines[0]
    lines = [short_args(l) if l.startswith(("#0", "#1")) or (hit_line(l) and l != first) else l for l in lines]
    # The source line printed at the first stop is left out.
    return "\n".join([lines[0]] + [l for i, l in enumerate(lines[1:]) if i or not re.match(r"^\d+\t", l)])


@recipe("ch16-batch")
def ch16_batch(ctx):
    # The chapter's script, run as it is written there, with plain gdb.
    g = ctx.gdb(debugger="gdb", args=["--port", "0", "--quiet", "--tick-secs", "0"])
    g.lines = ["set pagination off"]
    for command in ["break realtime_by_hand::hub::Hub::publish", "run", "bt", "info threads", "kill"]:
        g.cmd(command, show=False)
    body = b'{"message":"hello gdb"}'
    request = (
        b"POST /trigger-event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    # The chapter's curl, but the request is sent a moment after the
    # connection is made: by then the accept loop is back in accept4
    # for certain, where the chapter shows it (right after starting
    # conn-1's thread it may still be in clone3).
    out = g.run(lambda url: send_in_pieces(int(url.rsplit(":", 1)[1]), [b"", request], 0.3))
    lines = [l for l in gdb_lines(out) if not l.startswith("Kill the program")]
    return "\n".join(frames_up_to(lines, "spawn_connection::{closure#0}"))


@recipe("ch16-thread-find", "ch16-stream-bt", "ch16-fanout-bt")
def ch16_thread_find(ctx):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::app::events::serve_events if id == 2", show=False)
    g.cmd("run", show=False)
    g.cmd("thread find conn-")
    # One frame each: below the top, the standard library's frames have
    # names that change with the Rust release.
    g.cmd("thread apply all bt 1")
    g.raw("echo ---\\n")
    g.cmd("thread 4")
    g.cmd("bt")
    g.raw("echo ---\\n")
    g.cmd("thread 2")
    g.cmd("bt")
    g.cmd("kill", show=False)

    def streams(url):
        background(["curl", "-sN", "-m", "30", f"{url}/events"], ctx.path("curl1"))
        time.sleep(0.7)
        background(["curl", "-sN", "-m", "30", f"{url}/events"], ctx.path("curl2"))

    lines = gdb_lines(g.run(streams))
    lines = [l for l in lines if not l.startswith(("[New Thread", "[Switching to Thread"))]
    first = lines.index("(gdb) thread find conn-")
    marks = [i for i, l in enumerate(lines) if l == "---"]
    apply = lines[first : marks[0]]
    # The main thread, last, is left out.
    apply = apply[: next(i for i, l in enumerate(apply) if l.startswith("Thread 1 "))] + ["..."]
    stream = lines[marks[0] + 1 : marks[1]]
    stream = [l for l in stream if l.startswith("(gdb)")] + only_our_frames(
        frames_up_to([l for l in stream if l.startswith("#")], "serve_events")[:-1]
    )
    fanout = lines[marks[1] + 1 :]
    fanout = [l for l in fanout if l.startswith("(gdb)")] + only_our_frames(
        frames_up_to([l for l in fanout if l.startswith("#")], "start_fanout::{closure#0}")[:-1]
    )
    return ("\n".join(apply), "\n".join(stream), "\n".join(fanout))


@recipe("ch16-chat-threads", "ch16-writer-bt", "ch11-chat-threads")
def ch16_chat_threads(ctx):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::app::chat::chat_message", show=False)
    g.cmd("run", show=False)
    g.cmd("info threads")
    g.raw("echo ---\\n")
    g.cmd("thread 5")
    g.cmd("bt")
    g.cmd("kill", show=False)

    def chat(url):
        ws = url.replace("http://", "ws://") + "/ws"
        client = start([str(WS_CLIENT), ws, "--username", "ann"], stdin=subprocess.PIPE,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client.stdin.write(b"hi\n")
        client.stdin.flush()

    lines = gdb_lines(g.run(chat))
    lines = [l for l in lines if not l.startswith("[")]
    mark = lines.index("---")
    threads = [l for l in lines[:mark] if re.match(r"^[* ] +\d+ +Thread|^ +Id", l)]
    ours = [l for l in threads if '"conn-1' in l]
    writer = [l for l in lines[mark + 1 :] if l.startswith("(gdb)")]
    writer += only_our_frames([l for l in lines[mark + 1 :] if l.startswith("#")])
    writer = writer[: next(i for i, l in enumerate(writer) if "start_writer" in l) + 1]

    def shortened(line):
        line = re.sub(r" in (accept4) \(.*", r" in \1 (...)", line)
        line = re.sub(r"(syscall \(\)) at .*", r"\1 ...", line)
        return re.sub(r"(id=1), app=0x[0-9a-f]+\)", r"\1, ...)", line)

    return "\n".join(ours), "\n".join(writer), "\n".join(["(gdb) info threads"] + [shortened(l) for l in threads])


def stepping_session(ctx, locking):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::hub::Hub::publish", show=False)
    g.cmd("run", show=False)
    if locking:
        g.cmd("set scheduler-locking step", show=False)
    # The second POST, sent while conn-1 is stopped in publish.
    g.client("curl -s -m 20 -X POST -H 'Content-Type: application/json' -d '{\"message\":\"m2\"}' {url}/trigger-event")
    g.pause(1)
    for _ in range(3):
        g.cmd("next", show=False)
    if locking:
        g.cmd("info threads", show=False)
    g.cmd("kill", show=False)
    lines = gdb_lines(g.run(lambda url: background(
        ["curl", "-s", "-m", "20", "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"message":"m1"}',
         f"{url}/trigger-event"], ctx.path("m1"))))
    lines = lines[next(i for i, l in enumerate(lines) if hit_line(l)):]
    return lines


@recipe("ch16-no-locking")
def ch16_no_locking(ctx):
    # The step is over a wait that only a publish ends, so the other
    # thread's stop always comes first: the same output every run.
    wait = source_line("src/hub.rs", ".wait_timeout_while(", after="pub fn wait_after")
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::hub::Hub::publish", show=False)
    g.cmd("run", show=False)
    g.cmd(f"break src/hub.rs:{wait} thread 2")
    g.cmd("disable 2.2")
    g.cmd("continue")
    g.client("curl -s -m 20 -X POST -H 'Content-Type: application/json' -d '{\"message\":\"m2\"}' {url}/trigger-event")
    g.pause(1)
    g.cmd("next")
    g.cmd("kill", show=False)
    lines = gdb_lines(g.run(lambda url: background(
        ["curl", "-s", "-m", "20", "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"message":"m1"}',
         f"{url}/trigger-event"], ctx.path("m1"))))
    lines = lines[next(i for i, l in enumerate(lines) if l.startswith("(gdb) break src/hub.rs")):]
    lines = [l for l in lines if not l.startswith(("[New Thread 0x", "[Thread 0x", "Thread-specific breakpoint"))]
    out = []
    for line in lines:
        if out and not line and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out)


@recipe("ch16-locking")
def ch16_locking(ctx):
    lines = stepping_session(ctx, True)
    steps = [l for l in lines if re.match(r"^\d+\t", l)]
    current = [re.sub(r"\(self=.*\) at ", '(... "m1" ...) at ', l) for l in lines if l.startswith("* ")]
    return "\n".join(steps + current)


@recipe("ch16-print-bytes")
def ch16_print_bytes(ctx):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::http::head::HeadParser::feed", show=False)
    g.cmd("run", show=False)
    g.cmd("set print elements 15", show=False)
    g.cmd("p input")
    g.cmd("set print elements 12", show=False)
    g.cmd("p/x input")
    g.cmd("x/16xb input.data_ptr")
    g.raw("""
echo (gdb) python\\n
echo >s = gdb.parse_and_eval("input")\\n
echo >print(bytes(gdb.selected_inferior().read_memory(int(s["data_ptr"]), int(s["length"]))))\\n
echo >end\\n
python
s = gdb.parse_and_eval("input")
print(bytes(gdb.selected_inferior().read_memory(int(s["data_ptr"]), int(s["length"]))))
end
""")
    g.cmd("kill", show=False)
    out = g.run(lambda url: background(["curl", "-s", "-m", "20", f"{url}/stats"], ctx.path("curl")))
    lines = gdb_lines(out)
    return "\n".join(lines[lines.index("(gdb) p input"):])


def cargo_test_binary(ctx, *config):
    """Builds the library's unit tests and returns (what cargo printed, the binary)."""
    out = run(["cargo", "test", "--lib", "--no-run", *config], stderr=subprocess.STDOUT, cwd=ROOT, timeout=300)
    binary = re.search(r"Executable unittests src/lib\.rs \((\S+)\)", out).group(1)
    return out, str(ROOT / binary)


@recipe("ch16-no-run", "ch16-unit-test")
def ch16_unit_test(ctx):
    out, binary = cargo_test_binary(ctx, "--config", "profile.test.opt-level=0")
    built = ["$ cargo test --lib --no-run --config profile.test.opt-level=0"] + [
        l for l in out.split("\n") if l.strip().startswith(("Finished", "Executable"))
    ]
    g = ctx.gdb(program=binary, args=["--exact", "websocket::message::tests::fragments_with_a_ping_between_them"])
    g.cmd("break realtime_by_hand::websocket::message::MessageReader::receive", show=False)
    g.cmd("break realtime_by_hand::websocket::message::check_utf8_prefix", show=False)
    g.cmd("run", show=False)
    g.cmd("p/x input")
    g.cmd("continue")
    g.cmd("p *message")
    g.cmd("kill", show=False)
    lines = gdb_lines(g.run())
    lines = [l for l in lines if hit_line(l) or l.startswith(("(gdb)", "$"))]
    lines = [re.sub(r"(input=&\[u8\]\(size=\d+\)) = \{.*?\}\)", r"\1 = {...})", l) for l in lines]
    lines = [cut_field(l, "budget") for l in lines]
    return "\n".join(built), "\n".join(lines)


@recipe("ch16-optimised")
def ch16_optimised(ctx):
    _, binary = cargo_test_binary(ctx)
    g = ctx.gdb(program=binary, args=["--exact", "websocket::message::tests::fragments_with_a_ping_between_them"])
    g.cmd("break realtime_by_hand::websocket::message::MessageReader::read_frames", show=False)
    g.cmd("run", show=False)
    g.cmd("frame 2")
    g.cmd("p input")
    g.cmd("kill", show=False)
    lines = gdb_lines(g.run())
    keep = [lines[0], "…"] + [l for l in lines if hit_line(l)]
    return "\n".join(keep + lines[lines.index("(gdb) frame 2"):])


def test_summary(ctx, module):
    out = run(["cargo", "test", "--lib", module], cwd=ROOT, timeout=300)
    lines = out.split("\n")
    tests = sorted(l for l in lines if l.startswith("test ") and l.endswith(" ... ok"))
    count = next(l for l in lines if l.startswith("running "))
    result = next(l for l in lines if l.startswith("test result: "))
    return "\n".join([f"$ cargo test --lib {module}", count, *tests[:2], "...", result])


@recipe("ch16-message-tests")
def ch16_message_tests(ctx):
    return test_summary(ctx, "websocket::message")


@recipe("ch10-protocol-tests")
def ch10_protocol_tests(ctx):
    return test_summary(ctx, "websocket::protocol")


def send_in_pieces(port, pieces, pause):
    """Sends the pieces over one connection, `pause` seconds apart, in a
    thread of its own (the server may be stopped at a breakpoint)."""

    def send():
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(pause)
                sock.sendall(piece)
            try:
                sock.recv(4096)
            except OSError:
                pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


@recipe("ch02-feed-pieces")
def ch02_feed_pieces(ctx):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("set print elements 14", show=False)
    g.cmd("break realtime_by_hand::http::head::HeadParser::feed", show=False)
    g.raw("commands 1\nsilent\nprint input\ncontinue\nend")
    g.cmd("run", show=False)
    g.cmd("kill", show=False)
    pieces = [b"GET /stats HT", b"TP/1.1\r\nHo", b"st: x\r\nConnection: close\r\n\r\n"]

    def send(url):
        send_in_pieces(int(url.rsplit(":", 1)[1]), pieces, 0.5).join()
        g.interrupt()

    lines = gdb_lines(g.run(send))
    return "\n".join(l for l in lines if l.startswith("$"))


@recipe("ch02-method-not-allowed")
def ch02_method_not_allowed(ctx):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::server::router::method_not_allowed", show=False)
    g.cmd("run", show=False)
    g.cmd("bt 3", show=False)
    g.cmd("kill", show=False)
    lines = gdb_lines(g.run(lambda url: background(["curl", "-s", "-m", "20", "-X", "PUT", f"{url}/stats"], ctx.path("c"))))
    return "\n".join(l for l in lines if re.match(r"^#[0-2] ", l))


@recipe("ch09-utf8-prefix")
def ch09_utf8_prefix(ctx):
    g = ctx.gdb(server_flags=["--quiet", *PATIENT])
    g.cmd("break realtime_by_hand::websocket::message::check_utf8_prefix", show=False)
    g.cmd("run", show=False)
    g.cmd("up")
    g.cmd("print self.message")
    g.cmd("kill", show=False)
    pieces = [HANDSHAKE.format(path="/echo").encode(), bytes.fromhex("01 81 37 fa 21 3d d5")]
    lines = gdb_lines(g.run(lambda url: send_in_pieces(int(url.rsplit(":", 1)[1]), pieces, 0.3)))
    shown = ["cargo build", "rust-gdb --args target/debug/realtime-by-hand",
             "(gdb) break realtime_by_hand::websocket::message::check_utf8_prefix", "(gdb) run"]
    up = lines.index("(gdb) up")
    rest = [cut_field(l, "budget") for l in lines[up:] if l.startswith(("(gdb) ", "$"))]
    return "\n".join(shown + rest)


def shell(ctx, server, shown, drop=(), cwd=None, timeout=20, head_only=False):
    """Runs `shown`, a command as a chapter prints it (port 3000), against
    `server`, and returns it with its output, `$ ` in front. curl's `*`
    lines (connection details) are left out, and so are lines starting
    with one of `drop`."""
    actual = shown.replace(f"127.0.0.1:{SHOWN_PORT}", f"127.0.0.1:{server.port}")
    if head_only:
        # A connection that stays open: curl gives up after a second, and
        # what came after the response head is not shown.
        actual = actual.replace("curl ", "curl -m 1 ", 1)
    out = run(["bash", "-c", actual], stderr=subprocess.STDOUT, cwd=cwd or ctx.dir, timeout=timeout)
    lines = [l.rstrip("\r") for l in out.split("\n")]
    if head_only:
        lines = lines[: max(i for i, l in enumerate(lines) if l.rstrip() == "<") + 1]
    lines = [l for l in lines if not l.startswith(("* ", "{ ", "} ", *drop))]
    return "\n".join([f"$ {shown}", *lines])


def at(moment):
    """Sleeps until `moment` (a time.monotonic() value)."""
    time.sleep(max(0.0, moment - time.monotonic()))


@recipe("ch00-stream", "ch00-post", "ch00-log")
def ch00_journey(ctx):
    server = ctx.server("--tick-secs", "0")
    t0 = time.monotonic()
    stream = background(["curl", "-sN", "-m", "3.5", f"{server.url}/events"], ctx.path("stream"))
    at(t0 + 1)
    posted = post(server.url, "hello")
    at(t0 + 2)
    run([str(WS_CLIENT), server.url.replace("http", "ws") + "/ws", "--username", "ann"], input="hi\n")
    stream.wait(timeout=10)
    time.sleep(0.2)
    log = server.log()
    # The clients' own ports are the kernel's choice: shown as 6008N.
    seen = {}
    for line in log:
        for port in re.findall(r"from 127\.0\.0\.1:(\d+)", line):
            seen.setdefault(port, f"600{80 + 4 * len(seen):02d}")
    log = [re.sub(r"from 127\.0\.0\.1:(\d+)", lambda m: f"from 127.0.0.1:{seen[m.group(1)]}", l) for l in log]
    # Up to the chat's end; the stream's own end, when curl gave up, is not shown.
    log = [l for l in log if not l.startswith("client 1: SSE stream ended") and "(sse," not in l]
    return ctx.path("stream").read_text() + "\n", posted, "\n".join(log)


@recipe("ch02-misdirected")
def ch02_misdirected(ctx):
    server = ctx.server("--quiet")
    return shell(ctx, server, "curl -sv -H 'Host: evil.example:3000' http://127.0.0.1:3000/stats")


@recipe("ch03-head")
def ch03_head(ctx):
    server = ctx.server("--quiet")
    return shell(ctx, server, "curl -sI http://127.0.0.1:3000/app.js | cat -A")


@recipe("ch04-stream")
def ch04_stream(ctx):
    server = ctx.server("--quiet", "--tick-secs", "3", "--keepalive-secs", "2")
    t0 = time.monotonic()  # the ticker started a moment before this
    at(t0 + 0.2)
    stream = start(["bash", "-c", f"curl -sN -i -m 6.3 {server.url}/events | cat -A"], stdout=subprocess.PIPE)
    at(t0 + 1.2)
    post(server.url, "hello")
    at(t0 + 2.2)
    post(server.url, "disk almost full", type="warning", event="alert")
    out, _ = stream.communicate(timeout=15)
    return out.decode()


def resume_server(ctx, *flags, posts):
    server = ctx.server("--quiet", "--tick-secs", "0", *flags)
    for message in posts:
        post(server.url, message)
    return server


def stream_for(ctx, server, shown, seconds, during=None):
    """Runs the `curl -N` of `shown` for `seconds`, doing `during()` half
    way through."""
    actual = shown.replace(f"127.0.0.1:{SHOWN_PORT}", f"127.0.0.1:{server.port}")
    actual = actual.replace("curl ", f"curl -m {seconds} ", 1)
    process = start(["bash", "-c", actual], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if during:
        time.sleep(seconds / 2)
        during()
    out, _ = process.communicate(timeout=seconds + 10)
    return f"$ {shown}\n{out.decode()}"


@recipe("ch05-resume", "ch05-reset-newer")
def ch05_resume(ctx):
    server = resume_server(ctx, posts=[f"event {n}" for n in range(1, 5)])
    time.sleep(1.2)
    resumed = stream_for(
        ctx, server, "curl -N -H 'Last-Event-ID: 2' http://127.0.0.1:3000/events", 2,
        during=lambda: post(server.url, "event 5"),
    )
    newer = stream_for(ctx, server, "curl -N -H 'Last-Event-ID: 999' http://127.0.0.1:3000/events", 0.6)
    return resumed, newer


@recipe("ch05-reset-older")
def ch05_reset_older(ctx):
    server = resume_server(ctx, "--history", "3", posts=[f"event {n}" for n in range(1, 6)])
    return stream_for(ctx, server, "curl -N -H 'Last-Event-ID: 1' http://127.0.0.1:3000/events", 0.6)


@recipe("ch05-slow-subscriber")
def ch05_slow_subscriber(ctx):
    out = run([str(ROOT / "tests/lessons/slow-subscriber.sh")], timeout=90, stderr=subprocess.STDOUT)
    port = re.search(r"127\.0\.0\.1:(\d+)", out)
    if port:
        ctx.ports.append(int(port.group(1)))
    # How many events fit in the buffers is the kernel's choice: K.
    last = re.search(r"slow reader: got ids 1 to (\d+)", out)
    if last:
        k = int(last.group(1))
        out = re.sub(rf"\b{k}\b", "K", out)
        out = re.sub(rf"\b{k + 1}\b", "K+1", out)
    out = re.sub(r"\b\d+\.\d s\b", "… s", out)
    out = re.sub(r"\(the kernel made it \d+\)", "(the kernel doubles it)", out)
    return "$ tests/lessons/slow-subscriber.sh\n" + out


ESCAPES = r'{"message":"caf\u00e9 \ud83d\ude00 \"q\"\ttab\nline"}'


@recipe("ch06-post-verbose", "ch06-post-stream")
def ch06_post(ctx):
    server = ctx.server("--quiet", "--tick-secs", "0")
    stream = background(["curl", "-sN", "-m", "1.5", f"{server.url}/events"], ctx.path("stream"))
    time.sleep(0.5)
    (ctx.path("body.json")).write_text(ESCAPES)
    verbose = run(
        ["curl", "-sv", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@body.json",
         f"{server.url}/trigger-event"], stderr=subprocess.STDOUT, cwd=ctx.dir,
    )
    stream.wait(timeout=10)
    verbose = [l.rstrip("\r") for l in verbose.split("\n") if not l.startswith(("* ", "{ ", "} "))]
    events = ctx.path("stream").read_text().split("\n\n")
    event = next(e for e in events if e.startswith("id: 1\n"))
    return "\n".join(verbose), event + "\n"


@recipe("ch06-preflight")
def ch06_preflight(ctx):
    server = ctx.server("--quiet")
    return shell(
        ctx, server,
        "curl -si -X OPTIONS -H 'Origin: null' -H 'Access-Control-Request-Method: POST' \\\n"
        "       -H 'Access-Control-Request-Headers: content-type' http://127.0.0.1:3000/trigger-event",
    )


FORBIDDEN_UPGRADE = (
    "curl -sv -H 'Origin: https://evil.example' -H 'Upgrade: websocket' -H 'Connection: Upgrade' \\\n"
    "       -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' http://127.0.0.1:3000/ws"
)


@recipe("ch07-forbidden-origin")
def ch07_forbidden_origin(ctx):
    return shell(ctx, ctx.server("--quiet"), FORBIDDEN_UPGRADE)


@recipe("ch17-busy")
def ch17_busy(ctx):
    server = ctx.server("--quiet", "--max-buffered-bytes", "1000")
    ctx.path("big.json").write_text(json.dumps({"message": "x" * 2000}))
    out = shell(ctx, server, "curl -si -H 'Content-Type: application/json' --data-binary @big.json http://127.0.0.1:3000/trigger-event")
    return "$ cargo run -- --max-buffered-bytes 1000\n" + out


def as_port(text, port, shown):
    """`text` with the port a capture used shown as `shown` instead."""
    return re.sub(rf"\b127\.0\.0\.1:{port}\b", f"127.0.0.1:{shown}", text)


def closed_port():
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@recipe("ch19-two-posts", "ch19-two-stream")
def ch19_two_instances(ctx):
    # Two instances and no broker: each hub counts for itself.
    a = ctx.server("--quiet", "--tick-secs", "0")
    b = ctx.server("--quiet", "--tick-secs", "0")
    stream = background(["curl", "-sN", "-m", "2", f"{b.url}/events"], ctx.path("stream"))
    time.sleep(0.5)
    shown = []
    for server, port, message in [(a, 3001, "to A"), (b, 3002, "to B")]:
        body = json.dumps({"message": message}, separators=(",", ":"))
        command = f"curl -s -X POST -H 'Content-Type: application/json' -d '{body}' http://127.0.0.1:{port}/trigger-event"
        shown.append(f"$ {command}\n{post(server.url, message)}")
    stream.wait(timeout=10)
    events = ctx.path("stream").read_text().split("\n\n")
    event = next(e for e in events if e.startswith("id: 1\n"))
    ctx.ports.clear()  # shown as 3001 and 3002 below, not as 3000
    return (
        as_port(as_port("\n".join(shown), a.port, 3001), b.port, 3002),
        event,
    )


@recipe("ch19-resp")
def ch19_resp(ctx):
    # A fake Redis: a socket that keeps what an instance sends first, the
    # two commands of its first round trip, and then hangs up.
    with socket.socket() as fake:
        fake.bind(("127.0.0.1", 0))
        fake.listen(1)
        fake.settimeout(10)
        port = fake.getsockname()[1]
        server = start([str(SERVER), "--port", "0", "--quiet", "--broker", f"redis://127.0.0.1:{port}/demo"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        connection, _ = fake.accept()
        with connection:
            connection.settimeout(5)
            got = b""
            while got.count(b"\r\n") < 14:
                piece = connection.recv(4096)
                if not piece:
                    break
                got += piece
        server.wait(timeout=15)
    text = got.decode()
    # The epoch offered is random: 32 hex digits, shown as such.
    text = re.sub(r"\b[0-9a-f]{32}\b", "0123456789abcdef0123456789abcdef", text)
    return "\n".join(line + "\\r\\n" for line in text.split("\r\n")[:-1])


@recipe("ch19-unreachable")
def ch19_unreachable(ctx):
    redis = closed_port()
    server = ctx.server("--quiet", "--broker", f"redis://127.0.0.1:{redis}/demo", "--broker-optional")
    out = shell(ctx, server, "curl -si -X POST -H 'Content-Type: application/json' -d '{\"message\":\"hi\"}' http://127.0.0.1:3000/trigger-event",
                drop=("Date:",))
    # Shown as a port of five digits, as the kernel's free ones are, so that
    # Content-Length stays true.
    return as_port(out, redis, 16390)


@recipe("contract-misdirected")
def contract_misdirected(ctx):
    return shell(ctx, ctx.server("--quiet"), "curl -sv -H 'Host: evil.example:3000' http://127.0.0.1:3000/stats")


@recipe("contract-forbidden-preflight")
def contract_forbidden_preflight(ctx):
    return shell(
        ctx, ctx.server("--quiet"),
        "curl -sv -X OPTIONS -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST' \\\n"
        "       -H 'Access-Control-Request-Headers: content-type' http://127.0.0.1:3000/trigger-event",
    )


@recipe("contract-forbidden-post")
def contract_forbidden_post(ctx):
    return shell(
        ctx, ctx.server("--quiet"),
        "curl -sv -H 'Origin: https://evil.example' -H 'Content-Type: application/json' -d '{\"message\":\"hi\"}' \\\n"
        "       http://127.0.0.1:3000/trigger-event",
    )


@recipe("contract-options")
def contract_options(ctx):
    return shell(ctx, ctx.server("--quiet"), "curl -sv -X OPTIONS http://127.0.0.1:3000/anything",
                 drop=("> User-Agent", "> Accept"))


@recipe("contract-nesting")
def contract_nesting(ctx):
    return shell(
        ctx, ctx.server("--quiet"),
        "curl -s -H 'Content-Type: application/json' --data-binary "
        "'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]' http://127.0.0.1:3000/trigger-event",
    )


@recipe("contract-resume", "contract-reset-older", "contract-reset-restarted")
def contract_resume(ctx):
    server = ctx.server("--quiet", "--tick-secs", "0")
    post(server.url, "w")
    post(server.url, "x", type="alert", event="news")
    time.sleep(1.2)
    resumed = stream_for(ctx, server, "curl -sN -H 'Last-Event-ID: 1' http://127.0.0.1:3000/events", 0.6)
    older = resume_server(ctx, "--history", "3", posts="abcde")
    time.sleep(0.2)
    reset = stream_for(ctx, older, "curl -sN -H 'Last-Event-ID: 0' http://127.0.0.1:3000/events", 0.6)
    restarted = stream_for(ctx, older, "curl -sN 'http://127.0.0.1:3000/events?lastEventId=99'", 0.6)
    return resumed, reset, restarted


@recipe("contract-handshake")
def contract_handshake(ctx):
    return shell(
        ctx, ctx.server("--quiet"),
        "curl -sv -N -H 'Upgrade: websocket' -H 'Connection: Upgrade' -H 'Sec-WebSocket-Version: 13' \\\n"
        "       -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Extensions: permessage-deflate' \\\n"
        "       http://127.0.0.1:3000/ws",
        drop=("> User-Agent", "> Accept"),
        head_only=True,
    )


@recipe("contract-forbidden-origin")
def contract_forbidden_origin(ctx):
    return shell(ctx, ctx.server("--quiet"), FORBIDDEN_UPGRADE)


# --- the blocks in the lessons ----------------------------------------------


def marked_blocks(text):
    """(name, first line of the body, line after the body) for each marked
    block, as indexes into text.split("\\n")."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        m = MARK.match(line)
        if not m:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise SystemExit(f"a capture mark not followed by a code fence: {m.group(1)}")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        found.append((m.group(1), i + 2, end))
    return found


def json_blocks(text):
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == "```json":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            yield i + 1, "\n".join(lines[i + 1 : end])


def main():
    # Stopped from outside: the `finally`s still stop what was started.
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda n, _frame: sys.exit(128 + n))
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--print", action="store_true", help="print the blocks, change nothing")
    options = parser.parse_args()
    if options.list:
        print("\n".join(RECIPES))
        return 0

    chapters = sorted(LESSONS.glob("*.md"))
    # A configuration shown as ```json (lesson 16's launch.json) is pasted
    # by readers: it must at least be JSON.
    for chapter in chapters:
        for number, block in json_blocks(chapter.read_text()):
            try:
                json.loads(block)
            except ValueError as e:
                print(f"capture: {chapter.relative_to(ROOT)}:{number}: this ```json block is not JSON: {e}")
                return 1
    wanted = {}  # name -> [chapter]
    for chapter in chapters:
        for name, _, _ in marked_blocks(chapter.read_text()):
            wanted.setdefault(name, []).append(chapter)
    unknown = [n for n in wanted if n not in RECIPES]
    if unknown:
        print(f"capture: marks name recipes that do not exist: {', '.join(unknown)}")
        return 1
    twice = [n for n, c in wanted.items() if len(c) > 1]
    if twice:
        print(f"capture: recipes marked more than once: {', '.join(twice)}")
        return 1
    unused = [n for n in RECIPES if n not in wanted]
    if unused and not options.only and not options.print:
        print(f"capture: recipes no chapter marks: {', '.join(unused)}")
        return 1
    if options.only:
        names = [n for n in RECIPES if n in options.only]
    else:
        names = [n for n in RECIPES if n in wanted or options.print]

    captured = {}
    started = time.monotonic()
    try:
        done = set()
        for name in names:
            function, _, count = RECIPES[name]
            if function in done:
                continue
            done.add(function)
            t0 = time.monotonic()
            ctx = Context(name)
            try:
                texts = function(ctx)
                if count == 1:
                    texts = (texts,)
                for other, (f, i, _) in RECIPES.items():
                    if f is function:
                        captured[other] = normalise(texts[i], ctx.ports)
            finally:
                ctx.close()
            shown = ", ".join(n for n, (f, _, _) in RECIPES.items() if f is function)
            print(f"capture: {shown} ({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        stop_everything()
    captured = {n: t for n, t in captured.items() if n in wanted or options.only}
    if options.print:
        for name, text in captured.items():
            print(f"--- {name}\n{text}")
        return 0

    differing = 0
    for chapter in chapters:
        text = chapter.read_text()
        lines = text.split("\n")
        changed = False
        # From the last block up, so that earlier indexes stay valid.
        for name, body, end in reversed(marked_blocks(text)):
            if name not in captured:
                continue
            new = captured[name].split("\n")
            old = lines[body:end]
            if new == old:
                continue
            differing += 1
            changed = True
            where = f"{chapter.relative_to(ROOT)}, block {name} (line {body})"
            if options.check:
                diff = difflib.unified_diff(
                    old, new, fromfile=f"{where}, as written", tofile=f"{where}, as captured now", lineterm=""
                )
                print("\n".join(diff))
            lines[body:end] = new
        if changed and not options.check:
            chapter.write_text("\n".join(lines))
    seconds = time.monotonic() - started
    if options.check:
        if differing:
            print(
                f"capture: {differing} block(s) differ from what the code does now; "
                "run tests/lessons/capture.sh to rewrite them, and read the diff first"
            )
            return 1
        print(f"capture: {len(captured)} blocks match ({seconds:.0f} s)")
    else:
        print(f"capture: {len(captured)} blocks captured, {differing} rewritten ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
