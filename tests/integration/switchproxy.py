# SPDX-License-Identifier: Apache-2.0
"""A FaultProxy whose whole behaviour is switched at run time, for outage sequences: the mirror's
upstream URL points at it, and a test moves it between

- `"pass"`: requests are relayed to the upstream (what the upstream's access log then shows);
- `"hang"`: each request's head is read and nothing is ever answered (a dead route, a stuck
  proxy); the connection is held until the mode changes or the proxy stops;
- `"refuse"`: each connection is closed as soon as a request arrives (a reset);
- `"429"`: every request is answered `429 TOOMANYREQUESTS` with `Retry-After: 60` (the
  `retry_after` attribute), as Docker Hub answers a spent pull budget;
- `"503"`: every request is answered `503 UNAVAILABLE` (a registry whose backend is failing).

`log` (from FaultProxy) holds (method, path, outcome) for every request: the relayed status, or
"hang", "refuse", 429, 503. `held()` counts requests being hung right now."""

import threading

from faultproxy import FaultProxy

MODES = ("pass", "hang", "refuse", "429", "503")

_BODY_429 = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate '
             b'limit.","detail":null}]}\n')


_BODY_503 = (b'{"errors":[{"code":"UNAVAILABLE","message":"service unavailable",'
             b'"detail":null}]}\n')


class _Drop(OSError):
    """Raised by answer(): FaultProxy's request loop ends and closes both connections."""


class SwitchProxy(FaultProxy):
    def __init__(self, target_port, mode="pass"):
        super().__init__(target_port)
        self._mode = mode
        self._released = threading.Event()
        self._held = 0
        self.retry_after = "60"
        self.answer = self._answer

    @property
    def mode(self):
        return self._mode

    def set_mode(self, mode):
        assert mode in MODES, mode
        with self._lock:
            self._mode = mode
            old, self._released = self._released, threading.Event()
        old.set()  # lets every hung request go (its connection is closed)

    def held(self):
        with self._lock:
            return self._held

    def _answer(self, method, path):
        with self._lock:
            mode, released = self._mode, self._released
        if mode == "pass":
            return None
        if mode == "429":
            return 429, [("Content-Type", "application/json"),
                         ("Retry-After", self.retry_after)], _BODY_429
        if mode == "503":
            return 503, [("Content-Type", "application/json")], _BODY_503
        self._note(method, path, mode)
        if mode == "hang":
            with self._lock:
                self._held += 1
            try:
                while not released.wait(0.5) and not self._stop.is_set():
                    pass
            finally:
                with self._lock:
                    self._held -= 1
        raise _Drop()

    def stop(self):
        self._released.set()
        super().stop()

