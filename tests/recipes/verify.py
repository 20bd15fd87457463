"""The Python recipe of docs/resource-servers.md, as a program the suite runs
(tests/api/recipes.rs): verifies Tessera access tokens with PyJWT.

stdin: {"issuer", "audience", "jwks_uri", "scope",
        "introspection": null | {"url", "client_id", "client_secret"},
        "tokens": {name: token}}
stdout: {name: "accepted" | "refused: why"}
"""

import base64
import json
import sys
import urllib.parse
import urllib.request

import jwt
from jwt import PyJWKClient

# --- The recipe -----------------------------------------------------------

ALLOWED_ALGS = {"RS256", "ES256", "EdDSA"}  # never "none" or HS*


class Refused(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status = status


class ResourceServer:
    def __init__(self, issuer, audience, jwks_uri, introspection=None):
        self.issuer = issuer
        self.audience = audience
        # Caches the JWKS and refetches on an unknown kid.
        self.jwks = PyJWKClient(jwks_uri, cache_keys=True, lifespan=300)
        self.introspection = introspection

    def verify(self, token, required_scope):
        try:
            header = jwt.get_unverified_header(token)
            # RFC 9068: only access tokens (PyJWT does not check typ itself).
            if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
                raise Refused(401, "not an access token")
            if header.get("alg") not in ALLOWED_ALGS:
                raise Refused(401, "unsupported algorithm")
            key = self.jwks.get_signing_key_from_jwt(token)
            # The header's alg must be the key's own alg.
            if key.algorithm_name != header["alg"]:
                raise Refused(401, "algorithm does not match the key")
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=30,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as e:
            raise Refused(401, f"invalid_token: {e}") from e
        if required_scope not in str(claims.get("scope", "")).split(" "):
            raise Refused(403, f"insufficient_scope: needs {required_scope}")
        if self.introspection:
            self._check_not_revoked(token)
        return claims

    def _check_not_revoked(self, token):
        """High-value call: ask Tessera's /introspect; fail closed."""
        url, client_id, secret = self.introspection
        basic = base64.b64encode(
            f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}".encode()
        ).decode()
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode(),
            headers={"Authorization": f"Basic {basic}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                active = json.load(response).get("active") is True
        except OSError as e:
            raise Refused(503, f"introspection failed: {e}") from e
        if not active:
            raise Refused(401, "token revoked")


# --- The harness ----------------------------------------------------------


def main():
    config = json.load(sys.stdin)
    intro = config.get("introspection")
    server = ResourceServer(
        config["issuer"],
        config["audience"],
        config["jwks_uri"],
        (intro["url"], intro["client_id"], intro["client_secret"]) if intro else None,
    )
    results = {}
    for name, token in config["tokens"].items():
        try:
            server.verify(token, config["scope"])
            results[name] = "accepted"
        except Refused as e:
            results[name] = f"refused: {e.status} {e}"
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
