"""A relying party built on Authlib, run against Tessera as an OpenID Provider.

The same journey as ``openid_client_rp.mjs``, from another ecosystem:
discovery (validated with Authlib's Discovery and RP-Initiated Logout
metadata models), the code flow with PKCE, nonce and state through
``OAuth2Session``, the ID token verified against the JWKS and checked with
``authlib.oidc.core.CodeIDToken``, UserInfo, refresh, RP-initiated logout, and
a ``prompt=none`` re-check that the browser session is gone.

Authlib 1.7+ verifies signatures with joserfc (its ``authlib.jose`` is
deprecated); ``parse_id_token`` of Authlib's own framework clients does
exactly this, so this is the library's way.

Environment (as for the Node RP): ISSUER, CLIENT_ID, optional CLIENT_SECRET
(confidential, client_secret_basic; unset: public, auth method none),
REDIRECT_URI, POST_LOGOUT_REDIRECT_URI, EMAIL, PASSWORD, optional
RESPONSE_MODE (query or form_post) and RP_VERBOSE=1.

Prints one JSON line of what it saw on success; exits 1 with
``authlib_rp: FAILED at <step>: <why>`` on stderr otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

# The test issuer is plain http on 127.0.0.1; Authlib refuses that unless told.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.common.urls import add_params_to_uri  # noqa: E402
from authlib.integrations.base_client import OAuthError  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oidc import discovery, rpinitiated  # noqa: E402
from authlib.oidc.core import CodeIDToken, UserInfo  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402
from joserfc.jws import JWSRegistry  # noqa: E402

PROGRAM = "authlib_rp"
SCOPE = "openid profile email"
TIMEOUT = 15


class Failure(Exception):
    """A check of this RP failed; the message says which and why."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def env(name: str, optional: bool = False) -> str | None:
    value = os.environ.get(name) or None
    if value is None and not optional:
        print(f"{PROGRAM}: {name} is required (see the docstring of {PROGRAM}.py)", file=sys.stderr)
        sys.exit(2)
    return value


class Config:
    issuer = env("ISSUER")
    client_id = env("CLIENT_ID")
    client_secret = env("CLIENT_SECRET", optional=True)
    redirect_uri = env("REDIRECT_URI")
    post_logout_redirect_uri = env("POST_LOGOUT_REDIRECT_URI")
    email = env("EMAIL")
    password = env("PASSWORD")
    response_mode = env("RESPONSE_MODE", optional=True) or "query"
    verbose = os.environ.get("RP_VERBOSE") == "1"


def log(line: str) -> None:
    if Config.verbose:
        print(f"  {line}", file=sys.stderr)


def redact(url: str | None) -> str:
    """``url`` without its query values: codes and tokens stay out of logs."""
    if not url:
        return "(none)"
    parts = urlsplit(url)
    keep = {"error", "state", "prompt", "response_mode"}
    query = [(k, v if k in keep else "…") for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


# --- the user agent: a browser without a screen --------------------------------


class FormParser(HTMLParser):
    """Every form of a page, with the fields a browser would submit."""

    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page_url = page_url
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._text: list[str] = []
        self.headline: list[str] = []
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            # A missing or empty action submits to the page's own URL.
            self._form = {
                "method": a.get("method", "get").lower(),
                "action": urljoin(self.page_url, a.get("action") or self.page_url),
                "fields": [],
                "buttons": [],
            }
        elif tag == "h1":
            self._in_h1 = True
        elif self._form is not None and tag in ("input", "button"):
            kind = a.get("type", "submit" if tag == "button" else "text").lower()
            if kind in ("submit", "image"):
                self._form["buttons"].append((a.get("name"), a.get("value", "")))
            elif "name" in a and kind not in ("button", "reset", "file"):
                if kind in ("checkbox", "radio") and "checked" not in a:
                    return
                self._form["fields"].append((a["name"], kind, a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form" and self._form is not None:
            self.forms.append(self._form)
            self._form = None
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.headline.append(data.strip())


def describe(html: str) -> str:
    """The heading and alert of a page, for failure messages."""
    parser = FormParser("http://invalid/")
    parser.feed(html)
    alert = ""
    marker = 'role="alert"'
    if marker in html:
        tail = html.split(marker, 1)[1]
        alert = tail.split(">", 1)[1].split("<", 1)[0].strip()
    return " | ".join(p for p in (" ".join(parser.headline), alert) if p) or html[:200]


class UserAgent:
    """Cookies (requests' RFC 6265 jar), manual redirects, form submission."""

    def __init__(self) -> None:
        self.http = requests.Session()
        self.http.headers.update({"accept": "text/html", "user-agent": "tessera-rp-test"})

    def request(self, url: str, method: str = "GET", form: list[tuple[str, str]] | None = None):
        response = self.http.request(method, url, data=form, allow_redirects=False, timeout=TIMEOUT)
        location = response.headers.get("location")
        if location:
            location = urljoin(url, location)
        log(f"{method} {redact(url)} -> {response.status_code} {redact(location) if location else ''}")
        return response, location

    def submit(self, form: dict, overrides: dict[str, str], button: tuple | None):
        fields = [(name, overrides.pop(name, value)) for name, _kind, value in form["fields"]]
        fields += list(overrides.items())
        if button and button[0]:
            fields.append(button)
        if form["method"] == "post":
            return self.request(form["action"], "POST", fields)
        parts = urlsplit(form["action"])
        return self.request(urlunsplit(parts._replace(query=urlencode(fields))))

    def drive(self, start: str, redirect_uri: str, email: str, password: str):
        """Follows Tessera's pages from ``start`` (signing in, approving consent)
        until the navigation reaches ``redirect_uri``. Returns ``("redirect",
        url, status, pages)`` or ``("form_post", form, response, pages)``."""
        seen: list[str] = []
        response, location = self.request(start)
        url = start
        for _ in range(12):
            if 300 <= response.status_code < 400:
                check(location is not None, f"{response.status_code} without a Location")
                if location.startswith(redirect_uri):
                    seen.append("redirect")
                    return "redirect", location, response.status_code, seen
                url = location
                response, location = self.request(url)
                continue
            check(
                response.status_code == 200,
                f"page {redact(url)} answered {response.status_code}: {describe(response.text)}",
            )
            parser = FormParser(url)
            parser.feed(response.text)
            forms = parser.forms
            to_client = [f for f in forms if f["action"].startswith(redirect_uri)]
            if to_client:
                seen.append("form_post")
                return "form_post", to_client[0], response, seen
            login = [f for f in forms if any(kind == "password" for _n, kind, _v in f["fields"])]
            if login:
                check("login" not in seen, f"the sign-in page came back: {describe(response.text)}")
                seen.append("login")
                button = login[0]["buttons"][0] if login[0]["buttons"] else None
                url = login[0]["action"]
                response, location = self.submit(login[0], {"email": email, "password": password}, button)
                continue
            consent = [f for f in forms if ("decision", "approve") in f["buttons"]]
            if consent:
                seen.append("consent")
                url = consent[0]["action"]
                response, location = self.submit(consent[0], {}, ("decision", "approve"))
                continue
            raise Failure(f"unexpected page at {redact(url)}: {describe(response.text)}")
        raise Failure(f"no redirect to {redirect_uri} after 12 steps ({', '.join(seen)})")


# --- the relying party ---------------------------------------------------------


def left_half_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6 (at_hash) for the hash of ``alg``."""
    name = {"RS256": "sha256", "ES256": "sha256", "PS256": "sha256", "EdDSA": "sha512", "Ed25519": "sha512"}
    digest = hashlib.new(name.get(alg, "sha256"), value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class RelyingParty:
    def __init__(self) -> None:
        self.metadata: dict = {}
        self.jwks: KeySet | None = None
        auth_method = "client_secret_basic" if Config.client_secret else "none"
        self.session = OAuth2Session(
            client_id=Config.client_id,
            client_secret=Config.client_secret,
            scope=SCOPE,
            redirect_uri=Config.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=auth_method,
        )

    def discover(self) -> None:
        url = Config.issuer + "/.well-known/openid-configuration"
        response = requests.get(url, timeout=TIMEOUT)
        check(response.status_code == 200, f"discovery answered {response.status_code}")
        metadata = discovery.OpenIDProviderMetadata(response.json())
        # Authlib's own models check every REQUIRED Discovery member and the
        # RP-Initiated Logout one.
        metadata.validate(metadata_classes=[rpinitiated.OpenIDProviderMetadata])
        check(metadata["issuer"] == Config.issuer, f"issuer {metadata['issuer']} is not {Config.issuer}")
        problems = []
        for member in ("userinfo_endpoint", "end_session_endpoint"):
            if not isinstance(metadata.get(member), str):
                problems.append(f"{member} missing")
        if (metadata.get("id_token_signing_alg_values_supported") or [None])[0] != "RS256":
            problems.append("id_token_signing_alg_values_supported does not start with RS256")
        for mode in ("query", "form_post"):
            if mode not in (metadata.get("response_modes_supported") or []):
                problems.append(f"response_modes_supported lacks {mode}")
        if metadata.get("code_challenge_methods_supported") != ["S256"]:
            problems.append("code_challenge_methods_supported is not [S256]")
        for scope in ("openid", "profile", "email", "phone", "offline_access"):
            if scope not in (metadata.get("scopes_supported") or []):
                problems.append(f"scopes_supported lacks {scope}")
        for flag in ("backchannel_logout_supported", "backchannel_logout_session_supported"):
            if metadata.get(flag) is not True:
                problems.append(f"{flag} is not true")
        check(not problems, "discovery document: " + "; ".join(problems))
        self.metadata = dict(metadata)
        jwks = requests.get(metadata["jwks_uri"], timeout=TIMEOUT)
        check(jwks.status_code == 200, f"jwks_uri answered {jwks.status_code}")
        self.jwks = KeySet.import_key_set(jwks.json())

    def id_token(self, token: dict, nonce: str | None, what: str) -> CodeIDToken:
        """Verifies the ID token of ``token`` as Authlib's ``parse_id_token``
        does, with stricter claim options; returns its validated claims."""
        raw = token.get("id_token")
        check(isinstance(raw, str), f"{what}: no id_token in the token response")
        decoded = jwt.decode(
            raw,
            key=self.jwks,
            registry=JWSRegistry(
                algorithms=self.metadata["id_token_signing_alg_values_supported"],
                strict_check_header=False,
            ),
        )
        header = decoded.header
        check(header.get("alg") == "RS256", f"{what}: ID token alg {header.get('alg')}, expected RS256")
        check(header.get("typ") == "JWT", f"{what}: ID token typ {header.get('typ')}, expected JWT")
        options = {
            "iss": {"essential": True, "value": self.metadata["issuer"]},
            "aud": {"essential": True, "value": Config.client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "at_hash": {"essential": True},
        }
        params = {"client_id": Config.client_id, "access_token": token["access_token"]}
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
            params["nonce"] = nonce
        claims = CodeIDToken(decoded.claims, header, options, params)
        claims.validate(leeway=60)
        check(
            claims["at_hash"] == left_half_hash(token["access_token"], header["alg"]),
            f"{what}: at_hash does not match the access token",
        )
        return claims

    def authorization_url(self, **extra) -> tuple[str, str, str, str]:
        verifier = generate_token(64)
        nonce = generate_token(24)
        state = generate_token(24)
        url, _ = self.session.create_authorization_url(
            self.metadata["authorization_endpoint"],
            state=state,
            code_verifier=verifier,
            nonce=nonce,
            **extra,
        )
        return url, verifier, nonce, state


def main() -> dict:
    seen: dict = {"library": "authlib", "response_mode": Config.response_mode}
    rp = RelyingParty()
    ua = UserAgent()
    step = "start"

    def at(name: str) -> str:
        if Config.verbose:
            print(f"{PROGRAM}: {name}", file=sys.stderr)
        return name

    try:
        step = at("discovery")
        rp.discover()
        seen["issuer"] = rp.metadata["issuer"]

        step = at("sign-in pages")
        extra = {"login_hint": Config.email}
        if Config.response_mode != "query":
            extra["response_mode"] = Config.response_mode
        url, verifier, nonce, state = rp.authorization_url(**extra)
        kind, target, answer, pages = ua.drive(url, Config.redirect_uri, Config.email, Config.password)
        seen["pages"] = pages
        if Config.response_mode == "form_post":
            check(kind == "form_post", f"response_mode=form_post answered with a {kind}")
            check(target["method"] == "post", "the form_post form does not POST")
            csp = answer.headers.get("content-security-policy", "")
            check("'nonce-" in csp, f"the form_post page's CSP has no nonce: {csp}")
            # What the auto-submitted form would deliver to the client.
            response = {name: value for name, _kind, value in target["fields"]}
        else:
            check(kind == "redirect" and answer in (302, 303), f"expected a redirect, got {kind} {answer}")
            response = query_of(target)
        check("error" not in response, f"the server answered error={response.get('error')}")
        # RFC 9207: the response names its issuer; Authlib leaves this to the app.
        check(response.get("iss") == rp.metadata["issuer"], f"authorization response iss {response.get('iss')}")

        step = at("code exchange")
        callback = add_params_to_uri(Config.redirect_uri, list(response.items()))
        token = rp.session.fetch_token(
            rp.metadata["token_endpoint"],
            authorization_response=callback,
            state=state,
            code_verifier=verifier,
        )

        step = at("ID token")
        claims = rp.id_token(token, nonce, "code exchange")
        check(isinstance(claims.get("sid"), str) and claims["sid"], "sid missing")
        now = int(time.time())
        auth_time = claims.get("auth_time")
        check(isinstance(auth_time, int) and now - 600 < auth_time <= now + 5, f"auth_time {auth_time}")
        check(isinstance(claims.get("amr"), list) and "pwd" in claims["amr"], f"amr {claims.get('amr')}")
        check(claims.get("azp") in (None, Config.client_id), f"azp {claims.get('azp')}")
        check(isinstance(token.get("refresh_token"), str), "no refresh_token")
        seen["id_token"] = token["id_token"]
        seen["claims"] = dict(claims)
        seen["scope"] = token.get("scope")

        step = at("userinfo")
        got = rp.session.get(rp.metadata["userinfo_endpoint"], timeout=TIMEOUT)
        check(got.status_code == 200, f"userinfo GET answered {got.status_code}")
        info = UserInfo(got.json())
        posted = rp.session.post(rp.metadata["userinfo_endpoint"], timeout=TIMEOUT)
        check(posted.status_code == 200, f"userinfo POST answered {posted.status_code}")
        check(posted.json() == dict(info), "userinfo POST differs from GET")
        check(info.get("sub") == claims["sub"], "userinfo sub differs from the ID token's")
        check(str(info.get("email", "")).lower() == Config.email.lower(), f"userinfo email {info.get('email')}")
        check(isinstance(info.get("email_verified"), bool), "userinfo email_verified is not a boolean")
        for claim in ("name", "given_name", "family_name"):
            check(isinstance(info.get(claim), str), f"userinfo {claim} missing (scope profile)")
        check("phone_number" not in info, "userinfo has phone_number without the phone scope")
        seen["userinfo"] = dict(info)

        step = at("refresh")
        refreshed = rp.session.refresh_token(rp.metadata["token_endpoint"], refresh_token=token["refresh_token"])
        again = rp.id_token(refreshed, None, "refresh")
        check(again["sub"] == claims["sub"], "refreshed ID token sub differs")
        check("nonce" not in again, "refreshed ID token carries a nonce")
        check(refreshed.get("refresh_token") not in (None, token["refresh_token"]), "the refresh token did not rotate")
        seen["refreshed_claims"] = dict(again)

        step = at("RP-initiated logout")
        logout_state = generate_token(24)
        # As Authlib's create_logout_url builds it.
        end_session = add_params_to_uri(
            rp.metadata["end_session_endpoint"],
            {
                "id_token_hint": refreshed.get("id_token") or token["id_token"],
                "post_logout_redirect_uri": Config.post_logout_redirect_uri,
                "state": logout_state,
                "client_id": Config.client_id,
            },
        )
        answer, location = ua.request(end_session)
        check(answer.status_code == 303, f"end_session answered {answer.status_code}, expected 303")
        check(
            bool(location) and location.startswith(Config.post_logout_redirect_uri),
            f"logout redirected to {redact(location)}",
        )
        check(query_of(location).get("state") == logout_state, "logout redirect lost the state")
        seen["logout"] = {"status": answer.status_code, "location": location}

        step = at("refresh after logout")
        try:
            rp.session.refresh_token(rp.metadata["token_endpoint"], refresh_token=refreshed["refresh_token"])
        except OAuthError as err:
            check(err.error == "invalid_grant", f"refresh after logout: {err.error}")
            seen["refresh_after_logout"] = err.error
        else:
            raise Failure("the refresh family outlived the logout")

        step = at("session gone (prompt=none)")
        url, _verifier, _nonce, silent_state = rp.authorization_url(prompt="none")
        answer, location = ua.request(url)
        check(
            answer.status_code == 303 and bool(location) and location.startswith(Config.redirect_uri),
            f"prompt=none answered {answer.status_code} {redact(location)}",
        )
        query = query_of(location)
        check(query.get("error") == "login_required", f"prompt=none after logout: error={query.get('error')}")
        check(query.get("state") == silent_state, "prompt=none error lost the state")
        seen["after_logout"] = query["error"]
    except Failure as failure:
        fail(step, str(failure))
    except OAuthError as err:
        fail(step, f"{type(err).__name__}: error={err.error} description={err.description!r}")
    except Exception as err:  # noqa: BLE001 - any library error is a failed step
        if Config.verbose:
            import traceback

            traceback.print_exc()
        fail(step, f"{type(err).__name__}: {err}")
    return seen


def fail(step: str, why: str) -> None:
    print(f"{PROGRAM}: FAILED at {step}: {why}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    print(json.dumps(main()))
