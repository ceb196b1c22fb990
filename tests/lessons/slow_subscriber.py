#!/usr/bin/env python3
"""The clients of slow-subscriber.sh (which starts the server and stops it).

    slow_subscriber.py PORT SERVER_PID SERVER_LOG QUEUE

A slow reader, whose socket can hold very little, opens /events and then
stops reading. A fast reader opens /events too and reads everything. A
burst of large events is posted. The slow reader's socket fills, the
fan-out hands its stream to the stream's own thread, and that thread finds
the stream more than --queue events behind and ends it; the slow reader
then resumes with Last-Event-ID and gets the rest from the history. Every
step is printed; any step that does not happen is an error (exit 1).
"""

import http.client
import json
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path

EVENTS = 200
EVENT_BYTES = 60_000  # the data of one event; the body limit is 64 KiB
SMALL_BUFFER = 4096

# System call numbers, for naming what a thread is blocked in.
SYSCALLS = {
    "x86_64": {45: "recvfrom", 20: "writev", 1: "write", 44: "sendto", 202: "futex", 0: "read"},
    "aarch64": {207: "recvfrom", 66: "writev", 64: "write", 206: "sendto", 98: "futex", 63: "read"},
}.get(platform.machine(), {})


def say(text):
    print(text, flush=True)


def fail(text):
    say(f"slow-subscriber: FAILED: {text}")
    sys.exit(1)


def open_stream(port, rcvbuf=None, last_id=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect, so that the window offered in the handshake is
        # already the small one.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    resume = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n{resume}\r\n".encode())
    return sock


class Reader:
    """Reads an event stream and keeps the ids of its events, in order."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.ids = []
        self.opened = False
        self.ended = False

    def read_some(self):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            self.ended = True
            return False
        self.buffer += chunk
        *blocks, self.buffer = self.buffer.split(b"\n\n")
        for block in blocks:
            if b'"type":"initial_data"' in block:
                self.opened = True
            for line in block.split(b"\n"):
                if line.startswith(b"id: ") and b'"type":"notification"' in block:
                    self.ids.append(int(line[4:]))
        return True

    def read_until(self, done):
        while not done() and not self.ended:
            self.read_some()

    def read_opening(self):
        # The head and the opening blocks (welcome, initial_data).
        while not self.opened and not self.ended:
            self.read_some()


def thread_named(pid, name):
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return task
    return None


def blocked_in(pid, name):
    task = thread_named(pid, name)
    if task is None:
        return "gone"
    number = int((task / "syscall").read_text().split()[0])
    return SYSCALLS.get(number, f"system call {number}")


def span(ids):
    """'ids 1 to 47, in order' when they are consecutive; else an error."""
    if not ids:
        return "no events"
    if ids != list(range(ids[0], ids[-1] + 1)):
        fail(f"ids not consecutive: {ids}")
    return f"ids {ids[0]} to {ids[-1]}, in order"


def post_burst(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"message": "x" * EVENT_BYTES})
    for _ in range(EVENTS):
        connection.request("POST", "/trigger-event", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            fail(f"a POST was answered {answer.status}")
    connection.close()


def stats(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/stats")
    return json.loads(connection.getresponse().read())


def log_line(log, text):
    for line in Path(log).read_text().splitlines():
        if text in line:
            return line
    return None


def main():
    port, pid, log, queue = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    slow = Reader(open_stream(port, rcvbuf=SMALL_BUFFER))
    slow.read_opening()
    buffer = slow.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    say(f"slow reader: SO_RCVBUF {SMALL_BUFFER} before connect (the kernel made it {buffer}); "
        "it reads the opening, then nothing")
    fast = Reader(open_stream(port))
    fast.read_opening()
    say("fast reader: an ordinary socket, reading everything as it comes")
    fast_thread = threading.Thread(target=fast.read_until, args=(lambda: len(fast.ids) >= EVENTS,))
    fast_thread.start()
    time.sleep(0.2)
    say(f"before the burst: thread conn-1, the slow reader's, is in {blocked_in(pid, 'conn-1')}: "
        "the fan-out writes its stream")

    started = time.monotonic()
    post_burst(port)
    say(f"posted {EVENTS} events of {EVENT_BYTES} bytes in {time.monotonic() - started:.1f} s")
    fast_thread.join(timeout=30)
    say(f"fast reader: got {span(fast.ids)}, while the slow one read nothing")
    if fast.ids != list(range(1, EVENTS + 1)):
        fail("the fast reader did not get every event")
    time.sleep(0.3)
    state = blocked_in(pid, "conn-1")
    say(f"after the burst: thread conn-1 is in {state}: the fan-out handed the stream over to it,")
    say("  with the part of an event that did not fit; it waits for the socket to take it")
    say(f"after the burst: thread fanout is in {blocked_in(pid, 'fanout')}: waiting for the next event, held up by no one")
    if state == "recvfrom":
        fail("the slow reader's socket never filled; nothing was handed over")

    say("slow reader: reads again, as fast as it can")
    slow.sock.settimeout(10)
    slow.read_until(lambda: False)
    if not slow.ended:
        fail("the slow reader's stream did not end")
    say(f"slow reader: got {span(slow.ids)}, then end of file")
    time.sleep(0.2)
    line = log_line(log, "client 1: SSE stream ended")
    say(f"server log: {line}")
    if line is None or "fell too far behind" not in line:
        fail(f"the stream did not end for falling more than --queue {queue} events behind")
    numbers = stats(port)
    say("/stats: " + ", ".join(f'"{k}":{numbers[k]}' for k in ("dropped_slow_subscribers", "history")))
    if numbers["dropped_slow_subscribers"] != 1:
        fail("/stats does not count the dropped subscriber")

    last = slow.ids[-1]
    say(f"slow reader: opens the stream again with Last-Event-ID: {last}")
    resumed = Reader(open_stream(port, last_id=last))
    resumed.read_until(lambda: resumed.ids and resumed.ids[-1] >= EVENTS)
    say(f"slow reader: replayed {span(resumed.ids)}")
    if slow.ids + resumed.ids != list(range(1, EVENTS + 1)):
        fail("the two streams together are not every event once")
    say(f"together: each of the {EVENTS} events exactly once, none lost, none twice")
    for reader in (slow, fast, resumed):
        reader.sock.close()


if __name__ == "__main__":
    main()
