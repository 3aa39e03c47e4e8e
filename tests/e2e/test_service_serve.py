"""`tracekws serve` itself: starts on the shipped model, applies service.server's limits
(a request target over 8 KiB is answered 414 at once), and exits 0 on SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from tracekws.service.process import free_port


def test_serve_applies_the_limits_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "TRACEKWS_DATA_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tracekws.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "server did not start"
                time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 414")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    assert b"Application shutdown complete" in out
