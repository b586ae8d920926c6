"""A webhook receiver for the tests: verifies every delivery with the
Standard Webhooks reference library (one verifier per secret given, so a
rotation shows each secret verifying on its own) and misbehaves on demand.

    python3 tests/webhook_receiver.py PORT SECRET [SECRET...]

POST /control {"mode": M, "delay_ms": N} switches behaviour for deliveries:
  ok        answer 204 (after delay_ms)
  fail      answer 500
  hang      answer nothing for 60 s (past any timeout)
  redirect  answer 307 to another host
  huge      answer 200 with a 64 MiB body
GET /received lists every delivery attempt as JSON: id, customer, sequence,
type, status answered, and which secrets verified it.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

PORT = int(sys.argv[1])
VERIFIERS = [Webhook(secret) for secret in sys.argv[2:]]
LOCK = threading.Lock()
STATE = {"mode": "ok", "delay_ms": 0}
RECEIVED = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            body = json.dumps(RECEIVED).encode()
        self._answer(200, body, [("content-type", "application/json")])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/control":
            with LOCK:
                STATE.update(json.loads(body))
            return self._answer(204)
        with LOCK:
            mode, delay = STATE["mode"], STATE["delay_ms"]
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        for i, verifier in enumerate(VERIFIERS):
            try:
                verifier.verify(body, headers)
                verified.append(i)
            except Exception:
                pass
        event = json.loads(body)
        status = {"ok": 204, "fail": 500, "hang": 0, "redirect": 307, "huge": 200}[mode]
        if not verified:
            status = 401
        with LOCK:
            RECEIVED.append({
                "id": headers.get("webhook-id"),
                "customer": event["customer_id"],
                "sequence": event["sequence"],
                "type": event["type"],
                "status": status,
                "verified": verified,
            })
        if status == 0:
            time.sleep(60)
            return
        if delay:
            time.sleep(delay / 1000)
        if status == 307:
            return self._answer(307, b"", [("location", "http://elsewhere.invalid/hook")])
        if status == 200:
            size = 64 * 1024 * 1024
            self.send_response(200)
            self.send_header("content-length", str(size))
            self.end_headers()
            chunk = b"x" * (1024 * 1024)
            try:
                for _ in range(64):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        self._answer(status, b"no" if status >= 400 else b"")


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hung up on the gigantic body: expected.
        pass


server = Server(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
