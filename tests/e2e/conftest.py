"""The real `portvakt` binary, started as a newcomer starts it: `portvakt serve` in the project
root on the default config (its default ports), or on a copy of it for tests that change it."""

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PORTVAKT_BIN", ROOT / "target" / "debug" / "portvakt"))
ISSUER = "http://127.0.0.1:9000"
GATEWAY = "http://127.0.0.1:8080"
ADMIN = "http://127.0.0.1:9901"
SIMULATOR = "http://127.0.0.1:9100/kontaktinfo-external/ws-v5"
DEADLINE = 30.0


def wait_until(what, check, deadline=DEADLINE):
    """Poll `check` until it returns a truthy value; fail at the deadline."""
    start = time.monotonic()
    pause = 0.02
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() - start > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Portvakt:
    def __init__(self, cwd, args, log):
        self.log = log
        self.process = subprocess.Popen(
            [str(BINARY), "serve", *args],
            cwd=cwd,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self):
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"portvakt exited with {self.process.returncode}:\n{self.logs()}")
            return answers(f"{ADMIN}/readyz")

        wait_until("portvakt to be ready", ready)
        return self

    def logs(self):
        return Path(self.log).read_text(errors="replace")

    def signal(self, sig):
        self.process.send_signal(sig)

    def wait_exit(self, timeout=DEADLINE):
        return self.process.wait(timeout=timeout)

    def stop(self):
        """Ctrl-C, as a newcomer stops it: the process drains and must exit by the deadline."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"portvakt did not stop on SIGINT:\n{self.logs()[-4000:]}")


def ports_free():
    import socket

    for port in (8080, 9000, 9100, 9901):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The default stack exactly as the README's run command starts it."""
    assert BINARY.exists(), f"build the binary first: {BINARY}"
    wait_until("the default ports to be free", ports_free)
    log = tmp_path_factory.mktemp("stack") / "portvakt.log"
    portvakt = Portvakt(ROOT, [], log).wait_ready()
    yield portvakt
    portvakt.stop()


@pytest.fixture
def own_config(tmp_path):
    """A copy of the default config (and its dev material and register) the test may change."""
    config_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", config_dir)
    text = (config_dir / "portvakt.toml").read_text()
    text = text.replace(
        "[server]\n",
        f'[server]\nupgrade_socket = "{tmp_path}/upgrade.sock"\npid_file = "{tmp_path}/portvakt.pid"\n',
    )
    (config_dir / "portvakt.toml").write_text(text)
    wait_until("the default ports to be free", ports_free)
    return config_dir / "portvakt.toml"


def machine_token(scopes, kid=False):
    """A Maskinporten token via the JWT-bearer grant, signed here with joserfc (not Portvakt)."""
    answer = requests.post(
        f"{ISSUER}/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": grant_assertion(scopes, kid)},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def grant_assertion(scopes, kid=False):
    """The demo Maskinporten client's JWT-bearer grant assertion, signed with joserfc."""
    key = RSAKey.import_key((ROOT / "config/dev/demo-maskinporten.key.pem").read_bytes())
    if kid:
        header = {"alg": "RS256", "kid": "demo-maskinporten"}
    else:
        pem = (ROOT / "config/dev/demo-maskinporten.cert.pem").read_text()
        der = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
        header = {"alg": "RS256", "x5c": [der]}
    now = int(time.time())
    claims = {
        "aud": ISSUER,
        "iss": "demo-maskinporten",
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(header, claims, key)


def register_cases():
    """One personidentifikator per kind of register entry, as `portvakt register cases` prints."""
    out = subprocess.run(
        [str(BINARY), "register", "cases"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in out.strip().splitlines()}


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
