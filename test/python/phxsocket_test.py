"""The Python channel client `phxsocket` (PyPI, pinned in requirements.txt) against the
conformance app (`mix fenix.conformance`, see CONFORMANCE.md).

phxsocket speaks vsn 1.0.0 with integer refs counted from 0 and no join_ref, and
matches each reply to its request by that integer: against a server that echoed
refs as strings, every join and push would wait forever. So these tests also check,
on the wire as phxsocket reads it, that every reply carries its ref back as a number.

Run by `make test-python` (from `make test`) with the virtualenv the Makefile makes.
Environment: FENIX_CONFORMANCE_URL (e.g. http://127.0.0.1:4001) uses an app that is
already running instead of starting one; FENIX_TEST_VERBOSE=1 copies its output here.
Nothing waits without a timeout, and the app's process group is killed at the end.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import phxsocket

ROOT = Path(__file__).resolve().parents[2]
# A first `mix` run compiles the Rust engine and the Elixir code.
SERVER_START_TIMEOUT_S = 180
TIMEOUT_S = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConformanceApp:
    """`PORT=<free port> mix fenix.conformance`, started and stopped with its process group."""

    def __init__(self):
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port))
        self.proc = subprocess.Popen(
            ["mix", "fenix.conformance"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.output = []
        ready = threading.Event()
        threading.Thread(target=self._read, args=[ready], daemon=True).start()
        if not ready.wait(SERVER_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("the conformance app did not start:\n" + "".join(self.output[-40:]))

    def _read(self, ready):
        # Read to the end so that the app never blocks on a full pipe.
        for line in self.proc.stdout:
            self.output.append(line)
            if os.environ.get("FENIX_TEST_VERBOSE"):
                sys.stderr.write(line)
            if re.search(r"listening on 127\.0\.0\.1:\d+", line):
                ready.set()

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/socket/websocket"

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def within_timeout(call, *args):
    """phxsocket's own waits have no timeout: every blocking call goes through this."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call, *args).result(timeout=TIMEOUT_S)


class PhxsocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        external = os.environ.get("FENIX_CONFORMANCE_URL")
        if external:
            cls.app, cls.url = None, re.sub(r"^http", "ws", external.rstrip("/")) + "/socket/websocket"
        else:
            cls.app = ConformanceApp()
            cls.url = cls.app.url

    @classmethod
    def tearDownClass(cls):
        if cls.app:
            cls.app.stop()

    def setUp(self):
        self.client = phxsocket.Client(self.url, {"user_id": "py"})
        self.frames = []  # every message phxsocket read, as it parsed it
        self.frame_seen = threading.Condition()
        self.client.on_message = self._record
        self.assertTrue(within_timeout(self.client.connect))

    def tearDown(self):
        self.client.close()

    def _record(self, message):
        with self.frame_seen:
            self.frames.append(message)
            self.frame_seen.notify_all()

    def wait_for(self, what, predicate):
        """The first message phxsocket read that `predicate` accepts."""
        deadline = time.monotonic() + TIMEOUT_S
        with self.frame_seen:
            while True:
                found = next((m for m in self.frames if predicate(m)), None)
                if found:
                    return found
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, f"no {what} within {TIMEOUT_S} s; got {self.frames}")
                self.frame_seen.wait(left)

    def reply(self, sent):
        """The response of a push made with reply=True."""
        self.assertTrue(sent.event.wait(TIMEOUT_S), "no reply")
        return sent.message

    def test_joins_pushes_and_gets_its_replies_with_integer_refs(self):
        channel = self.client.channel("room:py", {"name": "Py"})
        self.assertEqual(within_timeout(channel.join), {"joined": "room:py", "user_id": "py"})

        self.assertEqual(
            self.reply(channel.push("echo", {"hello": "python", "n": [1, 2.5, None]}, reply=True)),
            {"status": "ok", "response": {"hello": "python", "n": [1, 2.5, None]}},
        )
        self.assertEqual(
            self.reply(channel.push("error", {"why": "asked"}, reply=True)),
            {"status": "error", "response": {"why": "asked"}},
        )

        # Every reply phxsocket read carried a number back (its heartbeat's included).
        replies = [m for m in self.frames if m.event == "phx_reply"]
        self.assertGreaterEqual(len(replies), 3)
        for message in replies:
            self.assertIs(type(message.ref), int, message)
        self.wait_for("heartbeat reply", lambda m: m.topic == "phoenix" and m.event == "phx_reply")

        # Channel.leave() of phxsocket 0.1.5 calls a method its reply object lacks (and
        # returns False whatever the server says): leave as it does, by its push.
        leave = channel.push(phxsocket.channel.ChannelEvents.LEAVE, {}, reply=True)
        self.assertEqual(self.reply(leave), {"status": "ok", "response": {}})
        self.wait_for("phx_close", lambda m: m.event == "phx_close" and m.topic == "room:py")

    def test_gets_pushes_and_broadcasts(self):
        channel = self.client.channel("room:py_events")
        within_timeout(channel.join)
        pushed, shouted = threading.Event(), threading.Event()
        payloads = {}
        channel.on("pushed", lambda payload: (payloads.setdefault("pushed", payload), pushed.set()))
        channel.on("shout", lambda payload: (payloads.setdefault("shout", payload), shouted.set()))

        channel.push("push", {"only": "me"})
        channel.push("shout", {"to": "all"})
        self.assertTrue(pushed.wait(TIMEOUT_S) and shouted.wait(TIMEOUT_S), self.frames)
        self.assertEqual(payloads, {"pushed": {"only": "me"}, "shout": {"to": "all"}})
        # Server pushes and broadcasts carry a null ref, as Phoenix sends them.
        self.assertIsNone(self.wait_for("pushed", lambda m: m.event == "pushed").ref)

    def test_a_refused_join_raises_with_the_reason(self):
        with self.assertRaises(phxsocket.channel.ChannelConnectError) as refused:
            within_timeout(self.client.channel("room:private").join)
        self.assertEqual(refused.exception.args[0], {"reason": "unauthorized"})


if __name__ == "__main__":
    unittest.main()
