"""A short soak of the default stack: a bounded mix of valid, invalid and malicious requests,
sent together from several clients. The gateway itself must answer no 5xx, no answer may cross
from one request to another (each request carries its own X-Request-Id, which its answer must
bear), and the process's peak resident memory must settle after a warm-up rather than grow."""

import json
import random
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from conftest import GATEWAY, machine_token, register_cases

HOST, PORT = "127.0.0.1", 8080
CLIENTS = 8
ROUNDS = 2  # a warm-up round, then a measured one
REQUESTS_PER_CLIENT = 500


def peak_memory_kib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1])


def raw_exchange(request: bytes, answers: int):
    """Send bytes on a fresh connection; read up to `answers` answers (heads and
    Content-Length bodies) until the gateway closes. Returns [(status, headers, body)]."""
    got = []
    with socket.create_connection((HOST, PORT), timeout=10) as sock:
        sock.sendall(request)
        buffer = b""
        while len(got) < answers:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return got
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    return got
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            if status != 100:
                got.append((status, headers, body))
    return got


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = {}
        self.gateway_5xx = []
        self.crossed = []

    def note(self, kind, sent_id, status, headers, body):
        with self.lock:
            self.statuses[(kind, status)] = self.statuses.get((kind, status), 0) + 1
            if status >= 500:
                self.gateway_5xx.append((kind, status, body[:300]))
            if headers.get("x-request-id") != sent_id:
                self.crossed.append((kind, sent_id, headers.get("x-request-id"), body[:300]))


def client_run(seed, tokens, ids, tally):
    rng = random.Random(seed)
    http = requests.Session()
    personer = f"{GATEWAY}/rest/v1/personer"
    authlevel = f"{GATEWAY}/authlevel/rest/v1/sikkerhetsnivaa"
    for _ in range(REQUESTS_PER_CLIENT):
        rid = uuid.uuid4().hex
        kind = rng.choice(
            ["lookup", "lookup", "authlevel", "no-token", "garbage-token", "wrong-scope", "bad-path",
             "bad-json", "smuggle-cl", "smuggle-te", "pipelined"]
        )
        headers = {"X-Request-Id": rid, "Content-Type": "application/json"}
        if kind in ("lookup", "bad-json", "wrong-scope", "garbage-token", "no-token"):
            token = {"lookup": tokens["krr"], "bad-json": tokens["krr"], "wrong-scope": tokens["authlevel"],
                     "garbage-token": "not-a-token." + rid, "no-token": None}[kind]
            if token:
                headers["Authorization"] = f"Bearer {token}"
            body = "{not json" if kind == "bad-json" else json.dumps({"personidentifikatorer": rng.sample(ids, 3)})
            answer = http.post(personer, data=body, headers=headers, timeout=30)
            tally.note(kind, rid, answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.text)
        elif kind == "authlevel":
            headers["Authorization"] = f"Bearer {tokens['authlevel']}"
            body = json.dumps({"personidentifikator": rng.choice(ids)})
            answer = http.post(authlevel, data=body, headers=headers, timeout=30)
            tally.note(kind, rid, answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.text)
        elif kind == "bad-path":
            path = rng.choice(["/rest/v1/%2e%2e/x", "/rest//v1/personer", "/nowhere", "/rest/v1/personer;x"])
            answer = http.get(f"{GATEWAY}{path}", headers=headers, timeout=30)
            tally.note(kind, rid, answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.text)
        else:
            # The body holds a whole request of its own; framing tricks try to make it one.
            inner = f"POST /token HTTP/1.1\r\nHost: x\r\nX-Request-Id: smuggled{rid}\r\nContent-Length: 3\r\n\r\nabc"
            auth = f"Authorization: Bearer {tokens['authlevel']}\r\nX-Request-Id: {rid}\r\n"
            target = "POST /authlevel/rest/v1/sikkerhetsnivaa HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            if kind == "smuggle-cl":
                request = f"{target}{auth}Connection: Content-Length\r\nContent-Length: {len(inner)}\r\n\r\n{inner}"
                expected = 1
            elif kind == "smuggle-te":
                chunked = f"0\r\n\r\n{inner}"
                request = f"{target}{auth}Content-Length: {len(chunked)}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"
                expected = 1
            else:
                second = uuid.uuid4().hex
                body = json.dumps({"personidentifikator": rng.choice(ids)})
                one = f"{target}{auth}Content-Length: {len(body)}\r\n\r\n{body}"
                two = one.replace(rid, second)
                request, expected = one + two, 2
            got = raw_exchange(request.encode(), expected)
            sent = [rid] if expected == 1 else [rid, second]
            for (status, answer_headers, body), sent_id in zip(got, sent):
                tally.note(kind, sent_id, status, answer_headers, body.decode(errors="replace"))
            with tally.lock:
                if any(b"access_token" in body for _, _, body in got):
                    tally.crossed.append((kind, rid, "a token answer", ""))


def test_a_bounded_mixed_load_gets_no_gateway_5xx_no_crossed_answers_and_memory_that_settles(stack):
    cases = register_cases()
    ids = [cases[name] for name in cases]
    tokens = {
        "krr": machine_token(["global/kontaktinformasjon.read", "global/varslingsstatus.read"]),
        "authlevel": machine_token(["global/idporten.authlevel.read"]),
    }
    tally = Tally()
    peaks = []
    for round_number in range(ROUNDS):
        with ThreadPoolExecutor(CLIENTS) as pool:
            runs = [pool.submit(client_run, round_number * 100 + c, tokens, ids, tally) for c in range(CLIENTS)]
            for run in runs:
                run.result()
        peaks.append(peak_memory_kib(stack.process.pid))
    sent = sum(tally.statuses.values())
    assert sent >= ROUNDS * CLIENTS * REQUESTS_PER_CLIENT * 0.99, tally.statuses
    assert not tally.gateway_5xx, tally.gateway_5xx[:10]
    assert not tally.crossed, tally.crossed[:10]
    # Every kind of request met the answer it should: valid ones 200, the others refused.
    for (kind, status), count in sorted(tally.statuses.items()):
        if kind == "lookup":
            assert status == 200, (kind, status, count)
        elif kind == "no-token":
            assert status == 401, (kind, status, count)
        elif kind == "garbage-token":
            # Not a JWT, so introspected: 401, or 429 once a client makes up too many a second.
            assert status in (401, 429), (kind, status, count)
        elif kind == "wrong-scope":
            assert status == 403, (kind, status, count)
        elif kind in ("bad-path",):
            assert status in (400, 404), (kind, status, count)
    # The warm-up round made the high-water mark; the second round adds little to it.
    warm, end = peaks
    assert end - warm < 32 * 1024, f"peak memory kept growing: {warm} KiB after warm-up, {end} KiB at the end"
    logs = stack.logs()
    assert not [pid for pid in ids if pid in logs], "a personal number reached the log"
