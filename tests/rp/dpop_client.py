"""A DPoP client (RFC 9449) written by hand on joserfc and requests, run
against Tessera's user API: it signs in with a proof, calls the API with
its bound token, and shows that neither the token nor the refresh token is
of use without the key.

Environment:
  ISSUER           the issuer (every proof's htu is ISSUER + the path)
  EMAIL, PASSWORD  an existing user
  RP_VERBOSE       optional: 1 logs every request (no secrets) to stderr

Prints one JSON line of what it saw on success; exits 1 with
"dpop_client: FAILED at <step>: <why>" on stderr otherwise (2 for a
missing variable).
"""

import base64
import hashlib
import json
import os
import secrets
import sys
import time

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

PROGRAM = "dpop_client"
VERBOSE = os.environ.get("RP_VERBOSE") == "1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def asks_for_nonce(response: requests.Response) -> bool:
    """RFC 9449 §8 and §9: the server wants a proof with its nonce."""
    if response.status_code == 401:
        return 'error="use_dpop_nonce"' in response.headers.get("WWW-Authenticate", "")
    if response.status_code != 400 or "DPoP-Nonce" not in response.headers:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    # /token answers an OAuth error, the user API a problem+json `code`.
    return "use_dpop_nonce" in (body.get("error"), body.get("code"))


class DPoPClient:
    """Holds one key, proves possession of it on every request, and keeps
    the nonce the server last sent."""

    def __init__(self, issuer: str):
        self.issuer = issuer.rstrip("/")
        self.key = ECKey.generate_key("P-256")
        self.nonce = None
        self.http = requests.Session()
        self.last_proof = None
        self.log = []  # (method, path, status, nonce challenge)

    def proof(self, method: str, path: str, access_token: str | None = None) -> str:
        """A DPoP proof JWT for one request (RFC 9449 §4.2)."""
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": self.issuer + path,
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if self.nonce is not None:
            claims["nonce"] = self.nonce
        return jwt.encode(header, claims, self.key)

    def send(self, method, path, access_token=None, ath_for=None, **kwargs):
        """`method path` with a fresh proof (and `Authorization: DPoP` when
        there is a token), sent again once if the server asks for a nonce."""
        for attempt in (1, 2):
            self.last_proof = self.proof(method, path, ath_for or access_token)
            headers = {"DPoP": self.last_proof}
            if access_token is not None:
                headers["Authorization"] = f"DPoP {access_token}"
            response = self.http.request(method, self.issuer + path, headers=headers, timeout=15, **kwargs)
            self.nonce = response.headers.get("DPoP-Nonce", self.nonce)
            challenged = asks_for_nonce(response)
            self.log.append((method, path, response.status_code, challenged))
            if VERBOSE:
                print(f"  {method} {path} -> {response.status_code}{' use_dpop_nonce' if challenged else ''}", file=sys.stderr)
            if not (challenged and attempt == 1):
                return response

    def login(self, email: str, password: str) -> requests.Response:
        return self.send("POST", "/api/users/login", json={"email": email, "password": password})

    def refresh(self, refresh_token: str) -> requests.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "tessera"}
        return self.send("POST", "/token", data=form)


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------


class StepError(Exception):
    pass


def check(condition, message):
    if not condition:
        raise StepError(message)


def describe(response: requests.Response) -> str:
    challenge = response.headers.get("WWW-Authenticate")
    return f"{response.status_code} {response.text[:300]}" + (f" (WWW-Authenticate: {challenge})" if challenge else "")


def claims_of(token: str) -> dict:
    """A JWT's claims, unverified (the access token's `cnf`)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def expect_tokens(response: requests.Response, jkt: str, what: str) -> dict:
    """A 200 token response with a DPoP access token bound to `jkt`."""
    check(response.status_code == 200, f"{what}: {describe(response)}")
    tokens = response.json()
    check(tokens.get("token_type") == "DPoP", f"{what}: token_type {tokens.get('token_type')}, expected DPoP")
    check(claims_of(tokens["access_token"]).get("cnf", {}).get("jkt") == jkt, f"{what}: cnf.jkt is not the key's")
    check(isinstance(tokens.get("refresh_token"), str), f"{what}: no refresh_token")
    return tokens


def expect_oauth_error(response: requests.Response, error: str, what: str) -> str:
    check(response.status_code == 400, f"{what}: {describe(response)}, expected 400 {error}")
    got = response.json().get("error")
    check(got == error, f"{what}: error={got}, expected {error}")
    return got


def expect_dpop_challenge(response: requests.Response, error: str, what: str) -> str:
    challenge = response.headers.get("WWW-Authenticate", "")
    check(response.status_code == 401, f"{what}: {describe(response)}, expected 401")
    check(challenge.startswith("DPoP"), f"{what}: WWW-Authenticate {challenge!r} is not a DPoP challenge")
    check(f'error="{error}"' in challenge, f"{what}: WWW-Authenticate {challenge!r} lacks error=\"{error}\"")
    check("algs=" in challenge, f"{what}: WWW-Authenticate {challenge!r} lacks algs")
    return challenge


def run(issuer: str, email: str, password: str, seen: dict, step) -> None:
    client = DPoPClient(issuer)
    jkt = client.key.thumbprint()
    seen["jkt"] = jkt

    step("login")
    tokens = expect_tokens(client.login(email, password), jkt, "login")
    access = tokens["access_token"]
    seen["token_type"] = tokens["token_type"]

    step("api with the bound token")
    me = client.send("GET", "/api/users/me", access)
    check(me.status_code == 200, describe(me))
    check(me.json().get("email", "").lower() == email.lower(), f"/api/users/me email {me.json().get('email')}")
    seen["me"] = me.status_code

    step("bound token as Bearer")
    bearer = requests.get(issuer + "/api/users/me", headers={"Authorization": f"Bearer {access}"}, timeout=15)
    seen["as_bearer"] = expect_dpop_challenge(bearer, "invalid_token", "a Bearer use of the bound token")

    step("proof for another token")
    other = expect_tokens(client.login(email, password), jkt, "second login")["access_token"]
    wrong_ath = client.send("GET", "/api/users/me", access, ath_for=other)
    seen["wrong_ath"] = expect_dpop_challenge(wrong_ath, "invalid_dpop_proof", "a proof with another token's ath")

    step("refresh")
    refreshed = expect_tokens(client.refresh(tokens["refresh_token"]), jkt, "refresh")
    check(refreshed["refresh_token"] != tokens["refresh_token"], "the refresh token did not rotate")
    current = refreshed["refresh_token"]
    seen["refresh"] = refreshed["token_type"]

    step("refresh with another key")
    thief = DPoPClient(issuer)
    seen["other_key"] = expect_oauth_error(thief.refresh(current), "invalid_grant", "a refresh with another key")

    step("refresh without a proof")
    form = {"grant_type": "refresh_token", "refresh_token": current, "client_id": "tessera"}
    bare = requests.post(issuer + "/token", data=form, timeout=15)
    seen["no_proof"] = expect_oauth_error(bare, "invalid_grant", "a refresh without a proof")

    step("refresh with the key again")
    again = expect_tokens(client.refresh(current), jkt, "the rightful refresh after the refused ones")
    seen["refresh_again"] = again["token_type"]

    step("replayed proof")
    form["refresh_token"] = again["refresh_token"]
    replay = requests.post(issuer + "/token", data=form, headers={"DPoP": client.last_proof}, timeout=15)
    seen["replay"] = expect_oauth_error(replay, "invalid_dpop_proof", "the same proof sent twice")
    final = expect_tokens(client.refresh(again["refresh_token"]), jkt, "a refresh after the replay")
    seen["refresh_after_replay"] = final["token_type"]

    seen["nonce_challenges"] = sum(1 for entry in client.log + thief.log if entry[3])
    seen["requests"] = [
        {"method": m, "path": p, "status": s, "nonce_challenge": c} for (m, p, s, c) in client.log + thief.log
    ]


def main() -> int:
    config = {}
    for name in ("ISSUER", "EMAIL", "PASSWORD"):
        config[name] = os.environ.get(name)
        if not config[name]:
            print(f"{PROGRAM}: {name} is required (see the top of {PROGRAM}.py)", file=sys.stderr)
            return 2
    current = ["start"]

    def step(name):
        current[0] = name
        if VERBOSE:
            print(f"{PROGRAM}: {name}", file=sys.stderr)

    seen = {"library": "joserfc"}
    try:
        run(config["ISSUER"].rstrip("/"), config["EMAIL"], config["PASSWORD"], seen, step)
    except StepError as err:
        print(f"{PROGRAM}: FAILED at {current[0]}: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - a crash is a failure of its step
        print(f"{PROGRAM}: FAILED at {current[0]}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
