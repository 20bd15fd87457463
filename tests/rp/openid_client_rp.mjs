// A relying party built on openid-client (v6, a certified RP library that
// validates ID tokens strictly), run against Tessera as an OpenID Provider:
// discovery, the code flow with PKCE, nonce and state, signed ID token
// checks, UserInfo, refresh, RP-initiated logout and a silent re-check that
// the browser session is gone.
//
// The sign-in pages are driven by a headless cookie-keeping user agent
// (user_agent.mjs), as a person's browser would.
//
// Environment:
//   ISSUER                    the issuer; discovery at ISSUER/.well-known/openid-configuration
//   CLIENT_ID                 a client registered for authorization_code + refresh_token,
//                             scopes openid profile email, the redirect URI below
//   CLIENT_SECRET             optional: a confidential client (client_secret_basic);
//                             unset: a public client (token_endpoint_auth_method none)
//   REDIRECT_URI              registered redirect URI (never fetched: the RP reads the redirect)
//   POST_LOGOUT_REDIRECT_URI  registered post-logout redirect URI (never fetched)
//   EMAIL, PASSWORD           an existing user
//   RESPONSE_MODE             optional: query (default) or form_post
//   RP_VERBOSE                optional: 1 logs every navigation (no secrets) to stderr
//
// Prints one JSON line of what it saw on success; exits 1 with
// "openid_client_rp: FAILED at <step>: <why>" on stderr otherwise.
import { createHash } from 'node:crypto';
import * as client from 'openid-client';
import { UserAgent, driveAuthorization, redactUrl } from './user_agent.mjs';

const SCOPE = 'openid profile email';
const PROGRAM = 'openid_client_rp';

function env(name, { optional = false } = {}) {
  const value = process.env[name];
  if (!value && !optional) {
    console.error(`${PROGRAM}: ${name} is required (see the header of ${PROGRAM}.mjs)`);
    process.exit(2);
  }
  return value || undefined;
}

const cfg = {
  issuer: env('ISSUER'),
  clientId: env('CLIENT_ID'),
  clientSecret: env('CLIENT_SECRET', { optional: true }),
  redirectUri: env('REDIRECT_URI'),
  postLogoutRedirectUri: env('POST_LOGOUT_REDIRECT_URI'),
  email: env('EMAIL'),
  password: env('PASSWORD'),
  responseMode: env('RESPONSE_MODE', { optional: true }) ?? 'query',
  verbose: process.env.RP_VERBOSE === '1',
};

class StepError extends Error {}

let currentStep = 'start';
/** Runs one named step; a failure names the step it happened in. */
async function step(name, fn) {
  currentStep = name;
  if (cfg.verbose) console.error(`${PROGRAM}: ${name}`);
  return fn();
}

function check(condition, message) {
  if (!condition) throw new StepError(message);
}

function b64url(buffer) {
  return Buffer.from(buffer).toString('base64url');
}

/** The JOSE header of a compact JWS. */
function joseHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));
}

/** OIDC Core §3.1.3.6: the left half of the hash of the access token, for the ID token's alg. */
function expectedAtHash(accessToken, alg) {
  const hash = { RS256: 'sha256', ES256: 'sha256', PS256: 'sha256', RS384: 'sha384', ES384: 'sha384',
    RS512: 'sha512', ES512: 'sha512', EdDSA: 'sha512', Ed25519: 'sha512' }[alg];
  check(hash, `no at_hash rule for alg ${alg}`);
  const digest = createHash(hash).update(accessToken, 'ascii').digest();
  return b64url(digest.subarray(0, digest.length / 2));
}

/** Checks what every ID token of this client must carry; returns its claims. */
function checkIdToken(tokens, what) {
  const idToken = tokens.id_token;
  check(typeof idToken === 'string', `${what}: no id_token in the token response`);
  const header = joseHeader(idToken);
  check(header.alg === 'RS256', `${what}: ID token alg ${header.alg}, expected RS256 (the default)`);
  check(header.typ === 'JWT', `${what}: ID token typ ${header.typ}, expected JWT`);
  check(typeof header.kid === 'string' && header.kid, `${what}: ID token has no kid`);
  const claims = tokens.claims();
  check(claims, `${what}: openid-client found no ID token claims`);
  check(typeof claims.sub === 'string' && claims.sub.length > 0, `${what}: sub missing`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  check(aud.includes(cfg.clientId), `${what}: aud ${JSON.stringify(claims.aud)} does not name the client`);
  check(claims.azp === undefined || claims.azp === cfg.clientId, `${what}: azp ${claims.azp} is not the client`);
  check(claims.at_hash === expectedAtHash(tokens.access_token, header.alg),
    `${what}: at_hash ${claims.at_hash} does not match the access token`);
  return { header, claims };
}

/** The parameters of the query of `url`. */
function paramsOf(url) {
  return Object.fromEntries(new URL(url).searchParams.entries());
}

function describeError(err) {
  const parts = [err.message];
  if (err.code) parts.push(`code=${err.code}`);
  if (err.error) parts.push(`error=${err.error}`);
  if (err.error_description) parts.push(`error_description=${JSON.stringify(err.error_description)}`);
  if (err.status) parts.push(`status=${err.status}`);
  if (err.cause && !(err.cause instanceof Response)) {
    const cause = err.cause instanceof Error ? err.cause.message : JSON.stringify(err.cause);
    if (cause) parts.push(`cause=${cause}`);
  }
  return parts.join(' ');
}

async function main() {
  const ua = new UserAgent({ log: cfg.verbose ? (line) => console.error(`  ${line}`) : undefined });
  const seen = { library: 'openid-client', response_mode: cfg.responseMode };

  const config = await step('discovery', async () => {
    const clientAuth = cfg.clientSecret ? client.ClientSecretBasic(cfg.clientSecret) : client.None();
    const metadata = cfg.clientSecret ? { client_secret: cfg.clientSecret } : { token_endpoint_auth_method: 'none' };
    const config = await client.discovery(new URL(cfg.issuer), cfg.clientId, metadata, clientAuth, {
      execute: [client.allowInsecureRequests],
    });
    // ID tokens from the token endpoint are checked against the JWKS too,
    // not only trusted for having come over the back channel.
    client.enableNonRepudiationChecks(config);
    const m = config.serverMetadata();
    const problems = [];
    const want = (ok, what) => ok || problems.push(what);
    want(m.issuer === cfg.issuer, `issuer ${m.issuer}`);
    for (const member of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'end_session_endpoint', 'jwks_uri']) {
      want(typeof m[member] === 'string', `${member} missing`);
    }
    want(m.id_token_signing_alg_values_supported?.[0] === 'RS256', 'id_token_signing_alg_values_supported does not start with RS256');
    for (const mode of ['query', 'form_post']) {
      want(m.response_modes_supported?.includes(mode), `response_modes_supported lacks ${mode}`);
    }
    want(JSON.stringify(m.code_challenge_methods_supported) === '["S256"]', 'code_challenge_methods_supported is not ["S256"]');
    for (const scope of ['openid', 'profile', 'email', 'phone', 'offline_access']) {
      want(m.scopes_supported?.includes(scope), `scopes_supported lacks ${scope}`);
    }
    want(m.subject_types_supported?.includes('public'), 'subject_types_supported lacks public');
    want(m.backchannel_logout_supported === true, 'backchannel_logout_supported is not true');
    want(m.backchannel_logout_session_supported === true, 'backchannel_logout_session_supported is not true');
    check(problems.length === 0, `discovery document: ${problems.join('; ')}`);
    seen.issuer = m.issuer;
    return config;
  });

  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const state = client.randomState();
  const authorizeUrl = await step('authorization request', async () => {
    const params = {
      redirect_uri: cfg.redirectUri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      nonce,
      state,
      login_hint: cfg.email,
    };
    if (cfg.responseMode !== 'query') params.response_mode = cfg.responseMode;
    return client.buildAuthorizationUrl(config, params);
  });

  const callback = await step('sign-in pages', async () => {
    const outcome = await driveAuthorization(ua, authorizeUrl.href, {
      redirectUri: cfg.redirectUri,
      email: cfg.email,
      password: cfg.password,
    });
    seen.pages = outcome.pages;
    if (cfg.responseMode === 'form_post') {
      check(outcome.kind === 'form_post', `response_mode=form_post answered with a ${outcome.kind}`);
      check(outcome.method === 'post', `the form_post form's method is ${outcome.method}`);
      const csp = outcome.page.response.headers.get('content-security-policy') ?? '';
      check(/script-src[^;]*'nonce-/.test(csp), `the form_post page's CSP has no script nonce: ${csp}`);
      // What the browser's auto-submitted form delivers to the client.
      return new Request(outcome.action, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(outcome.fields.map((f) => [f.name, f.value])).toString(),
      });
    }
    check(outcome.kind === 'redirect', `expected a redirect to the client, got ${outcome.kind}`);
    check(outcome.status === 303 || outcome.status === 302, `redirect status ${outcome.status}`);
    const query = paramsOf(outcome.url);
    check(!query.error, `the server answered error=${query.error} (${query.error_description})`);
    return new URL(outcome.url);
  });

  const tokens = await step('code exchange', () =>
    client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedNonce: nonce,
      expectedState: state,
      idTokenExpected: true,
    }),
  );

  const first = await step('ID token', () => {
    const { header, claims } = checkIdToken(tokens, 'code exchange');
    check(claims.nonce === nonce, 'nonce not echoed');
    check(typeof claims.sid === 'string' && claims.sid.length > 0, 'sid missing');
    check(Number.isInteger(claims.auth_time), 'auth_time missing');
    const now = Math.floor(Date.now() / 1000);
    check(claims.auth_time <= now + 5 && claims.auth_time > now - 600, `auth_time ${claims.auth_time} is not this sign-in`);
    check(Array.isArray(claims.amr) && claims.amr.includes('pwd'), `amr ${JSON.stringify(claims.amr)} lacks pwd`);
    check(claims.exp > now, 'ID token already expired');
    check(typeof tokens.refresh_token === 'string', 'no refresh_token (the client has the refresh_token grant)');
    seen.id_token = tokens.id_token;
    seen.id_token_header = header;
    seen.claims = claims;
    seen.scope = tokens.scope;
    return claims;
  });

  await step('userinfo', async () => {
    const info = await client.fetchUserInfo(config, tokens.access_token, first.sub);
    check(info.sub === first.sub, 'userinfo sub differs');
    check(typeof info.email === 'string' && info.email.toLowerCase() === cfg.email.toLowerCase(), `userinfo email ${info.email}`);
    check(typeof info.email_verified === 'boolean', 'userinfo email_verified is not a boolean');
    for (const claim of ['name', 'given_name', 'family_name']) {
      check(typeof info[claim] === 'string', `userinfo ${claim} missing (scope profile)`);
    }
    check(info.updated_at === undefined || Number.isInteger(info.updated_at), 'userinfo updated_at is not in seconds');
    check(info.phone_number === undefined, 'userinfo has phone_number without the phone scope');
    seen.userinfo = info;
  });

  const refreshed = await step('refresh', async () => {
    const next = await client.refreshTokenGrant(config, tokens.refresh_token);
    const { claims } = checkIdToken(next, 'refresh');
    check(claims.sub === first.sub, `refreshed ID token sub ${claims.sub} differs from ${first.sub}`);
    check(claims.nonce === undefined, 'refreshed ID token carries a nonce');
    check(next.refresh_token && next.refresh_token !== tokens.refresh_token, 'the refresh token did not rotate');
    seen.refreshed_claims = claims;
    return next;
  });

  await step('RP-initiated logout', async () => {
    const logoutState = client.randomState();
    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: refreshed.id_token ?? tokens.id_token,
      post_logout_redirect_uri: cfg.postLogoutRedirectUri,
      state: logoutState,
    });
    const answer = await ua.request(endSession.href);
    check(answer.status === 303, `end_session answered ${answer.status}, expected 303 (${answer.location ?? 'no Location'})`);
    check(answer.location?.startsWith(cfg.postLogoutRedirectUri), `logout redirected to ${redactUrl(answer.location)}`);
    check(paramsOf(answer.location).state === logoutState, 'logout redirect lost the state');
    seen.logout = { status: answer.status, location: answer.location };
  });

  await step('refresh after logout', async () => {
    // Without offline_access the family ends with the browser session.
    try {
      await client.refreshTokenGrant(config, refreshed.refresh_token);
    } catch (err) {
      check(err.error === 'invalid_grant', `refresh after logout: ${describeError(err)}`);
      seen.refresh_after_logout = err.error;
      return;
    }
    throw new StepError('the refresh family outlived the logout');
  });

  await step('session gone (prompt=none)', async () => {
    const silentState = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: cfg.redirectUri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
      nonce: client.randomNonce(),
      state: silentState,
      prompt: 'none',
    });
    const answer = await ua.request(url.href);
    check(answer.status === 303 && answer.location?.startsWith(cfg.redirectUri),
      `prompt=none answered ${answer.status} ${redactUrl(answer.location ?? '')}`);
    const query = paramsOf(answer.location);
    check(query.error === 'login_required', `prompt=none after logout: error=${query.error}, expected login_required`);
    check(query.state === silentState, 'prompt=none error lost the state');
    seen.after_logout = query.error;
  });

  console.log(JSON.stringify(seen));
}

try {
  await main();
} catch (err) {
  const why = err instanceof StepError ? err.message : describeError(err);
  console.error(`${PROGRAM}: FAILED at ${currentStep}: ${why}`);
  if (cfg.verbose && !(err instanceof StepError)) console.error(err);
  process.exit(1);
}
