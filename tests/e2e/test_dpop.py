"""DPoP (RFC 9449) with an independent client: joserfc makes the key and signs every proof, and
computes the thumbprint the token must be bound to; requests speaks HTTP."""

import base64
import hashlib
import time
import uuid

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from conftest import GATEWAY, ISSUER, grant_assertion, jwt_claims, register_cases

SCOPE = "krr:global/kontaktinformasjon.read"


def proof(key, method, uri, token=None, **extra):
    claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": uri, "iat": int(time.time()), **extra}
    if token:
        claims["ath"] = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key)


def bound_token(key):
    answer = requests.post(
        f"{ISSUER}/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": grant_assertion([SCOPE])},
        headers={"DPoP": proof(key, "POST", f"{ISSUER}/token")},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "DPoP"
    return answer.json()["access_token"]


def lookup(scheme, token, dpop=None):
    headers = {"Authorization": f"{scheme} {token}"}
    if dpop:
        headers["DPoP"] = dpop
    pid = register_cases()["active, e-mail only"]
    return requests.post(f"{GATEWAY}/rest/v1/personer", json={"personidentifikatorer": [pid]}, headers=headers, timeout=10)


def test_a_joserfc_client_gets_a_bound_token_and_uses_it_with_proofs(stack):
    key = ECKey.generate_key("P-256")
    token = bound_token(key)
    assert jwt_claims(token)["cnf"]["jkt"] == key.thumbprint()
    uri = f"{GATEWAY}/rest/v1/personer"
    good = proof(key, "POST", uri, token)
    assert lookup("DPoP", token, good).status_code == 200
    replayed = lookup("DPoP", token, good)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_dpop_proof"
    assert replayed.headers["WWW-Authenticate"].startswith("DPoP ")
    as_bearer = lookup("Bearer", token)
    assert as_bearer.status_code == 401 and as_bearer.json()["error"] == "invalid_token"
    other_key = lookup("DPoP", token, proof(ECKey.generate_key("P-256"), "POST", uri, token))
    assert other_key.status_code == 401 and "another key" in other_key.json()["error_description"]
    stale = lookup("DPoP", token, proof(key, "POST", uri, token, iat=int(time.time()) - 3600))
    assert stale.status_code == 401 and stale.json()["error"] == "invalid_dpop_proof"
