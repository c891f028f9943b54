"""The installed `daybook-client` package against a live `daybook serve` (issue 18).

Usage: python client_package.py DAYBOOK_BINARY

Starts daybook on a TCP port and a Unix socket, then drives it through the package only:
a tenant, messages (one with an exact provider price), a batch with a refusal in it,
errors carrying their google.rpc details, usage, the statement and the export summing to
it, and WatchRecords resumed from a cursor and across a server restart.
"""

import calendar
import datetime
import hashlib
import os
import zoneinfo
import re
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal

from daybook.v1 import events_pb2
from daybook_client import AlreadyExists, Client, InvalidArgument, PermissionDenied, Unavailable, message

BINARY = sys.argv[1]
# Events of the last half hour: the server judges lateness by its real clock.
BASE = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(minutes=30)
MONTH = BASE.astimezone(zoneinfo.ZoneInfo("America/New_York")).strftime("%Y-%m")


def at(minutes):
    """An event time `minutes` after the base."""
    return (BASE + datetime.timedelta(minutes=minutes)).isoformat()


def start(data, socket):
    """Starts daybook on a free TCP port and `socket`; returns (process, address)."""
    process = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--uds", socket, "--admin", "off", "--data-dir", data],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    return process, announced(process)


def announced(process):
    """The TCP address a starting daybook announces in its log."""
    found = {}

    def read():
        for line in process.stderr:
            m = re.search(r"gRPC listening on ([0-9.]+:[0-9]+)", line)
            if m and "addr" not in found:
                found["addr"] = m.group(1)

    threading.Thread(target=read, daemon=True).start()
    for _ in range(600):
        if "addr" in found:
            return found["addr"]
        if process.poll() is not None:
            raise SystemExit("daybook exited at start")
        time.sleep(0.05)
    raise SystemExit("daybook did not announce its address")


def stop(process):
    process.terminate()
    process.wait(timeout=30)


def main():
    work = tempfile.mkdtemp()
    data, socket = os.path.join(work, "data"), os.path.join(work, "daybook.sock")
    server, addr = start(data, socket)
    try:
        run(addr, socket, data, server)
    finally:
        if server.poll() is None:
            stop(server)
    run_tls(work)
    print("python client package: checked")


def run_tls(work):
    """TLS with a bearer token: a CA and a server certificate made here, a credential
    that may manage, ingest and read `acme`, and one token that matches none."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=work)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=daybook test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    token = "python-client-test-token-" + os.urandom(8).hex()
    with open(os.path.join(work, "credentials.toml"), "w") as f:
        f.write('[[credential]]\nid = "python"\n')
        f.write(f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n')
        f.write('ingest = ["acme"]\nread = ["acme"]\nmanage = ["acme"]\n')
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    process = subprocess.Popen(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--admin", "off", "--data-dir", os.path.join(work, "tls-data"),
         "--tls-cert", os.path.join(work, "server.pem"), "--tls-key", os.path.join(work, "server.key"),
         "--auth-file", os.path.join(work, "credentials.toml"), "--uds", os.path.join(work, "tls.sock")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    addr = announced(process)
    with open(os.path.join(work, "ca.pem"), "rb") as f:
        ca = f.read()
    try:
        with Client(addr, tls=True, root_certificates=ca, token_file=token_file) as daybook:
            daybook.create_tenant("acme")
            outcome = daybook.ingest_message("acme", "t-1", at(1), "c1", conversation_id="k1")
            assert outcome.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, outcome
            assert daybook.usage("acme").interactions == 1
        with Client(addr, tls=True, root_certificates=ca, token="not-a-token", retries=0) as stranger:
            try:
                stranger.usage("acme")
                raise AssertionError("a token that matches no credential is refused")
            except PermissionDenied as e:
                assert e.code == "UNAUTHENTICATED", vars(e)
    finally:
        stop(process)


def run(addr, socket, data, server):
    with Client(addr) as daybook:
        daybook.create_tenant("acme", meter="dar", time_zone="America/New_York")
        try:
            daybook.create_tenant("acme")
            raise AssertionError("a second create must be refused")
        except AlreadyExists as e:
            assert e.code == "ALREADY_EXISTS", e

        first = daybook.ingest_message(
            "acme", "m-1", at(0), "c1", conversation_id="k1", integration_id="web-1"
        )
        assert first.disposition == events_pb2.DISPOSITION_NEW_INTERACTION, first
        assert [line.credits for line in first.lines] == ["1"], first
        again = daybook.ingest_message(
            "acme", "m-1", at(0), "c1", conversation_id="k1", integration_id="web-1"
        )
        assert again.retry and again.disposition == first.disposition, again

        priced = daybook.ingest_message(
            "acme", "m-2", at(5), "c2", conversation_id="k2", sender_role="agent", sender_id="a1",
            integration_id="web-1", provider_price=(Decimal("0.0079"), "USD"),
        )
        assert priced.pass_through.charge.amount == "0.009085", priced
        try:
            message("acme", "m-x", at(5), "c2", provider_price=(0.0079, "USD"))
            raise AssertionError("a float price must be refused before it is sent")
        except TypeError:
            pass

        # A refusal carries its google.rpc details.
        try:
            daybook.ingest_message("acme", "m-3", "yesterday", "c3", conversation_id="k3")
            raise AssertionError("a bad event time must be refused")
        except InvalidArgument as e:
            assert e.code == "INVALID_ARGUMENT" and e.rule == "T-6", vars(e)
            assert [f for f, _ in e.field_violations] == ["event_time"], e.field_violations

        # A batch: one outcome per event, the refused one carrying its refusal.
        batch = [message("acme", f"b-{i}", at(10), f"c{10 + i}", conversation_id="k", integration_id="web-1") for i in range(5)]
        batch.append(message("acme", "b-bad", "", "c99"))
        outcomes = daybook.ingest_batch(batch)
        assert len(outcomes) == 6
        assert all(o.disposition == events_pb2.DISPOSITION_NEW_INTERACTION for o in outcomes[:5]), outcomes
        assert outcomes[5].refusal.code == "INVALID_ARGUMENT", outcomes[5]
        try:
            daybook.ingest_batch([message("acme", "b-bad", "", "c99")], raise_refusals=True)
            raise AssertionError("raise_refusals raises")
        except InvalidArgument as e:
            assert e.field_violations, e

        usage = daybook.usage("acme")
        assert usage.interactions == 7 and Decimal(usage.credits) == 7, usage
        statement = daybook.statement("acme", MONTH)
        rows = list(daybook.export("acme", MONTH))
        assert sum(Decimal(r.line.credits) for r in rows) == Decimal(statement.credits), (rows, statement)
        assert len(rows) == 7, rows
        # Usage by day sums to the month's usage.
        year, month = map(int, MONTH.split("-"))
        last = calendar.monthrange(year, month)[1]
        days = daybook.usage_groups("acme", "day", f"{MONTH}-01", f"{MONTH}-{last:02}")
        assert days and sum(u.interactions for u in days.values()) == usage.interactions, days
        assert sum(Decimal(u.credits) for u in days.values()) == Decimal(usage.credits), days
        meters = daybook.usage_groups("acme", "meter")
        assert sum(u.interactions for u in meters.values()) == usage.interactions, meters
        channels = daybook.usage_groups("acme", "channel")
        assert sum(u.interactions for u in channels.values()) == usage.interactions, channels

    # The same books over the Unix socket.
    with Client(f"unix:{socket}") as local:
        assert local.usage("acme").interactions == 7

    # Records: a watch stopped after three resumes from the third's cursor, and the two
    # together are every record, each once.
    everything = records_now(addr)
    with Client(addr) as daybook:
        seen = []
        for record in daybook.watch_records(["acme"]):
            seen.append(record)
            if len(seen) == 3:
                break
    rest = records_now(addr, cursor=seen[-1].cursor)
    assert [r.record_id for r in seen + rest] == [r.record_id for r in everything], "resumed after the cursor"
    assert len(everything) >= 9, len(everything)

    # A watch that outlives a restart of the server resumes where it stopped.
    watcher = Client(addr, retries=40, backoff=0.05)
    received = []
    done = threading.Event()

    def watch():
        for record in watcher.watch_records(["acme"], cursor=everything[-1].cursor):
            received.append(record.record_id)
            if "after-restart" in record.interaction.event_id:
                done.set()
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.5)
    stop(server)
    port = addr.rsplit(":", 1)[1]
    restarted, _ = start_on(data, socket, port)
    try:
        with Client(addr, retries=40) as daybook:
            daybook.ingest_message("acme", "after-restart", at(20), "c50", conversation_id="k", integration_id="web-1")
        assert done.wait(30), f"the watch resumed after the restart: {received}"
        assert len(received) == len(set(received)), received
    finally:
        watcher.close()
        stop(restarted)
    try:
        with Client(addr, retries=1, backoff=0.01) as gone:
            gone.usage("acme")
        raise AssertionError("a stopped server is unavailable")
    except Unavailable as e:
        assert e.code == "UNAVAILABLE"


def records_now(addr, cursor=""):
    """Every record after `cursor` that a watch delivers within a second."""
    got = []
    client = Client(addr)

    def watch():
        try:
            for record in client.watch_records(["acme"], cursor=cursor):
                got.append(record)
        except Exception:  # cancelled when the client closes
            pass

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    thread.join(1.0)
    client.close()
    return list(got)


def start_on(data, socket, port):
    """Starts daybook again on the same TCP port and socket."""
    process = subprocess.Popen(
        [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--uds", socket, "--admin", "off", "--data-dir", data],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    return process, f"127.0.0.1:{port}"


if __name__ == "__main__":
    main()
