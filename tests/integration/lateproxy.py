# SPDX-License-Identifier: Apache-2.0
"""A SwitchProxy whose hung requests are answered late when the route comes back: on a switch
from "hang" to "pass" each request being held is relayed to the upstream then (an upstream that
answers after a long silence), instead of being dropped. Held requests meeting any other mode
are dropped, as SwitchProxy does."""

from switchproxy import SwitchProxy, _Drop


class LateProxy(SwitchProxy):
    def _answer(self, method, path):
        with self._lock:
            mode, released = self._mode, self._released
        if mode != "hang":
            return super()._answer(method, path)
        self._note(method, path, "hang")
        with self._lock:
            self._held += 1
        try:
            while not released.wait(0.5) and not self._stop.is_set():
                pass
        finally:
            with self._lock:
                self._held -= 1
                mode = self._mode
        if mode == "pass" and not self._stop.is_set():
            self._note(method, path, "late")
            return None  # relayed now
        raise _Drop()
