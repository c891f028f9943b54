"""A webhook receiver written from the README: it verifies every delivery with the
README's own `verify` function (taken from README.md as it is written), against a live
`daybook serve` whose tenant crosses its plan's alert thresholds.

Usage: python3 tests/python/webhook_receiver.py DAYBOOK_BINARY
"""

import http.server
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

from daybook_client import Client

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = sys.argv[1]

# The README's verify function, exactly as a reader copies it.
readme = (ROOT / "README.md").read_text()
snippet = re.search(r"<!-- webhook verify -->\n```python\n(.*?)```", readme, re.S).group(1)
namespace = {}
exec(snippet, namespace)
verify = namespace["verify"]

SECRET = b"whsec_readme_test"
received = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((self.headers, body))  # case-insensitive, as HTTP headers are
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=receiver.serve_forever, daemon=True).start()

with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    (tmp / "secret").write_bytes(SECRET + b"\n")
    (tmp / "daybook.toml").write_text(
        '[[tenant]]\nid = "acme"\ntime_zone = "UTC"\nmeter = "dar"\n'
        'plan = { kind = "starter", included = 4, alerts = ["0.5", "1.0"] }\n'
        f'[[sink]]\nname = "acme-alerts"\nkind = "webhook"\n'
        f'url = "http://127.0.0.1:{receiver.server_port}/hooks/acme"\n'
        f'secret_file = "{tmp / "secret"}"\ntenants = ["acme"]\n'
    )
    server = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--data-dir", str(tmp / "data"),
         "--config", str(tmp / "daybook.toml")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        addr = None
        for line in server.stderr:
            m = re.search(r"gRPC listening on ([0-9.]+:[0-9]+)", line)
            if m:
                addr = m.group(1)
                break
        assert addr, "daybook announced no address"
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        with Client(addr) as daybook:
            for i in range(5):
                daybook.ingest_message("acme", f"e{i}", now, f"c{i}", conversation_id="k", sender_id="bot")
        deadline = time.time() + 30
        while len(received) < 2 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait()

assert len(received) >= 2, f"two thresholds crossed, two alerts: {received}"
ids = set()
for headers, body in received:
    assert verify(SECRET, headers["Daybook-Signature"], body), headers
    assert not verify(b"another secret", headers["Daybook-Signature"], body)
    assert not verify(SECRET, headers["Daybook-Signature"], body + b" "), "a changed body does not verify"
    event = json.loads(body)
    assert event["type"] == "io.daybook.alert.v1" and event["subject"] == "acme", event
    assert headers["Webhook-Id"] == event["id"]
    ids.add(event["id"])
assert len(ids) == 2, ids
print(f"webhook receiver: {len(received)} deliveries, {len(ids)} alerts, every signature verified by the README's code")
