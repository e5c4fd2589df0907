# SPDX-License-Identifier: Apache-2.0
"""Process and port helpers shared by the fixtures: free ports, readiness waits, and
process-group lifecycle so nothing is left listening when the session ends."""

import http.client
import os
import signal
import socket
import subprocess
import time

ALL = []  # every Proc started, so the session teardown can kill stragglers


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(port, path="/v2/", method="GET", timeout=2.0, conn=None):
    """Status of one request, or None when nothing answers (conn: e.g. an HTTPSConnection)."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for(predicate, timeout, what, interval=0.1, proc=None):
    """Polls predicate until it is truthy; raises with `what` (and the process's log) if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}\n{proc.tail()}")
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f"\n{proc.tail()}" if proc else ""))


class Proc:
    """A child in its own process group, stdout+stderr appended to log_path."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                      start_new_session=True)
        self.pid = self.popen.pid
        ALL.append(self)

    def alive(self):
        return self.popen.poll() is None

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """Exit status, or raises subprocess.TimeoutExpired."""
        return self.popen.wait(timeout)

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """SIGTERM the group, SIGKILL it after timeout; returns the leader's exit status."""
        if self.alive():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.popen.returncode

    def kill(self):
        """SIGKILL whatever is left of the process group."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if not self._log.closed:
            self._log.close()


def kill_all():
    for p in ALL:
        p.kill()
    ALL.clear()


def wait_settled(read, quiet=0.4, timeout=5.0):
    """Waits until read() (e.g. an access log) stops changing for `quiet` seconds; returns it.
    Servers write their access-log line after the response, so a client can be ahead of it."""
    last, since = read(), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last
