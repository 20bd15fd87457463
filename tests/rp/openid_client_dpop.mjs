// A relying party on openid-client (v6) that asks Tessera for DPoP-bound
// tokens (RFC 9449) through a pushed authorization request (RFC 9126):
// discovery, PAR with a DPoP proof, the sign-in pages, the code exchange
// (refused with another key, then with the client's), UserInfo and an API
// call with the bound token, refreshes with the right key and another one.
//
// openid-client makes every proof and answers the server's `use_dpop_nonce`
// challenges itself; a recording fetch (`client.customFetch`) notes what
// went over the wire, so the summary says how many challenges there were.
// The sign-in pages are driven by the headless user agent of
// user_agent.mjs, as a person's browser would.
//
// Environment:
//   ISSUER          the issuer; discovery at ISSUER/.well-known/openid-configuration
//   CLIENT_ID       a client registered for authorization_code + refresh_token,
//                   scopes openid profile email offline_access, the redirect URI
//                   below, with require_pushed_authorization_requests and
//                   dpop_bound_access_tokens
//   CLIENT_SECRET   optional: a confidential client (client_secret_basic);
//                   unset: a public client (token_endpoint_auth_method none)
//   REDIRECT_URI    registered redirect URI (never fetched: the RP reads the redirect)
//   EMAIL, PASSWORD an existing user
//   RP_VERBOSE      optional: 1 logs every step and request (no secrets) to stderr
//
// Prints one JSON line of what it saw on success; exits 1 with
// "openid_client_dpop: FAILED at <step>: <why>" on stderr otherwise.
import * as client from 'openid-client';
import { UserAgent, driveAuthorization, redactUrl } from './user_agent.mjs';

const SCOPE = 'openid profile email offline_access';
const PROGRAM = 'openid_client_dpop';
const REQUEST_URI_PREFIX = 'urn:ietf:params:oauth:request_uri:';

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
  email: env('EMAIL'),
  password: env('PASSWORD'),
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

/** The claims of a JWT, unverified (the access token's `cnf`). */
function jwtClaims(jwt) {
  const parts = typeof jwt === 'string' ? jwt.split('.') : [];
  check(parts.length === 3, 'the access token is not a JWT');
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

// ---------------------------------------------------------------------------
// What went over the wire
// ---------------------------------------------------------------------------

/** Every request openid-client made: method, path, status, proof, challenge. */
const wire = [];

/**
 * Whether `response` asks for a DPoP nonce (RFC 9449 §8, §9): a 400
 * `use_dpop_nonce` from the authorization server (an OAuth error body, or
 * a problem+json `code`), or a 401 challenge from a resource server.
 */
async function isNonceChallenge(response) {
  if (response.status === 401) {
    const challenge = response.headers.get('www-authenticate') ?? '';
    return /^\s*DPoP\b/i.test(challenge) && /error="use_dpop_nonce"/.test(challenge);
  }
  if (response.status !== 400 || !response.headers.has('dpop-nonce')) return false;
  try {
    const body = await response.clone().json();
    return body.error === 'use_dpop_nonce' || body.code === 'use_dpop_nonce';
  } catch {
    return false;
  }
}

/** A fetch for openid-client that records each exchange in `wire`. */
async function recordingFetch(url, options) {
  const response = await fetch(url, options);
  const headers = options.headers ?? {};
  const has = (name) => Object.keys(headers).some((k) => k.toLowerCase() === name);
  const entry = {
    method: options.method,
    path: new URL(url).pathname,
    status: response.status,
    dpop: has('dpop'),
    nonce_challenge: await isNonceChallenge(response),
  };
  wire.push(entry);
  if (cfg.verbose) {
    console.error(`  ${entry.method} ${redactUrl(url)} -> ${entry.status}${entry.dpop ? ' (DPoP)' : ''}` +
      `${entry.nonce_challenge ? ' use_dpop_nonce' : ''}`);
  }
  return response;
}

/** The requests made to `path` since the `from`-th one. */
function requestsTo(path, from = 0) {
  return wire.slice(from).filter((r) => r.path === path);
}

// ---------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------

async function main() {
  const ua = new UserAgent({ log: cfg.verbose ? (line) => console.error(`  ${line}`) : undefined });
  const seen = { library: 'openid-client', client: cfg.clientSecret ? 'confidential' : 'public' };

  const config = await step('discovery', async () => {
    const clientAuth = cfg.clientSecret ? client.ClientSecretBasic(cfg.clientSecret) : client.None();
    const metadata = cfg.clientSecret ? { client_secret: cfg.clientSecret } : { token_endpoint_auth_method: 'none' };
    const config = await client.discovery(new URL(cfg.issuer), cfg.clientId, metadata, clientAuth, {
      execute: [client.allowInsecureRequests],
      [client.customFetch]: recordingFetch,
    });
    client.enableNonRepudiationChecks(config);
    const m = config.serverMetadata();
    const problems = [];
    const want = (ok, what) => ok || problems.push(what);
    want(m.issuer === cfg.issuer, `issuer ${m.issuer}`);
    for (const member of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint',
      'pushed_authorization_request_endpoint']) {
      want(typeof m[member] === 'string' && m[member].startsWith(cfg.issuer), `${member} is ${m[member]}`);
    }
    want(Array.isArray(m.dpop_signing_alg_values_supported) && m.dpop_signing_alg_values_supported.includes('ES256'),
      `dpop_signing_alg_values_supported ${JSON.stringify(m.dpop_signing_alg_values_supported)} lacks ES256`);
    want(m.scopes_supported?.includes('offline_access'), 'scopes_supported lacks offline_access');
    check(problems.length === 0, `discovery document: ${problems.join('; ')}`);
    check(config[client.customFetch] === recordingFetch, 'the recording fetch is not the configuration\'s');
    seen.issuer = m.issuer;
    seen.dpop_signing_alg_values_supported = m.dpop_signing_alg_values_supported;
    return config;
  });

  // The client's key: every proof of this flow is signed with it.
  const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
  const jkt = await DPoP.calculateThumbprint();
  seen.jkt = jkt;

  await step('authorization request without PAR', async () => {
    // RFC 9126 §5: a client that must push its requests is refused at the
    // authorization endpoint when it sends the parameters there.
    const plain = client.buildAuthorizationUrl(config, {
      redirect_uri: cfg.redirectUri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
      state: client.randomState(),
      nonce: client.randomNonce(),
    });
    const answer = await new UserAgent().request(plain.href);
    if (answer.status >= 300 && answer.status < 400) {
      const target = new URL(answer.location);
      check(answer.location.startsWith(cfg.redirectUri),
        `a plain authorization request redirected to ${redactUrl(answer.location)}`);
      check(!target.searchParams.has('code'), 'a plain authorization request got a code');
      check(target.searchParams.get('error') === 'invalid_request',
        `a plain authorization request: error=${target.searchParams.get('error')}, expected invalid_request`);
      seen.without_par = target.searchParams.get('error');
    } else {
      check(answer.status === 400, `a plain authorization request answered ${answer.status}, expected a refusal`);
      seen.without_par = answer.status;
    }
  });

  const verifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const state = client.randomState();
  const authorizeUrl = await step('pushed authorization request', async () => {
    const before = wire.length;
    const url = await client.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: cfg.redirectUri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      nonce,
      state,
      login_hint: cfg.email,
    }, { DPoP });
    const pushed = requestsTo('/par', before);
    check(pushed.length > 0, `no request reached /par (${JSON.stringify(wire.slice(before))})`);
    const last = pushed[pushed.length - 1];
    check(last.status === 201, `/par answered ${last.status}, expected 201`);
    check(last.dpop, 'the pushed request carried no DPoP proof');
    const params = Object.fromEntries(url.searchParams.entries());
    check(params.request_uri?.startsWith(REQUEST_URI_PREFIX), `request_uri ${params.request_uri}`);
    check(params.client_id === cfg.clientId, `client_id ${params.client_id}`);
    check(!('scope' in params) && !('code_challenge' in params) && !('state' in params),
      `the authorization URL carries pushed parameters: ${Object.keys(params).join(' ')}`);
    seen.par = true;
    return url;
  });

  const callback = await step('sign-in pages', async () => {
    const outcome = await driveAuthorization(ua, authorizeUrl.href, {
      redirectUri: cfg.redirectUri,
      email: cfg.email,
      password: cfg.password,
    });
    seen.pages = outcome.pages;
    check(outcome.kind === 'redirect', `expected a redirect to the client, got ${outcome.kind}`);
    const query = new URL(outcome.url).searchParams;
    check(!query.get('error'), `the server answered error=${query.get('error')} (${query.get('error_description')})`);
    return new URL(outcome.url);
  });

  await step('code exchange with another key', async () => {
    // RFC 9449 §10.1: the pushed proof bound the code to the client's key;
    // a proof of another key is refused, before the code is used.
    const thief = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    try {
      await client.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: verifier,
        expectedNonce: nonce,
        expectedState: state,
        idTokenExpected: true,
      }, undefined, { DPoP: thief });
    } catch (err) {
      check(err.error === 'invalid_dpop_proof' || err.error === 'invalid_grant',
        `code exchange with another key: ${describeError(err)}`);
      seen.code_other_key = err.error;
      return;
    }
    throw new StepError('the code was exchanged with a proof of another key');
  });

  const tokens = await step('code exchange', async () => {
    const before = wire.length;
    const tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedNonce: nonce,
      expectedState: state,
      idTokenExpected: true,
    }, undefined, { DPoP });
    check(tokens.token_type === 'dpop', `token_type ${tokens.token_type}, expected DPoP`);
    check(requestsTo('/token', before).every((r) => r.dpop), 'a token request without a DPoP proof');
    check(jwtClaims(tokens.access_token).cnf?.jkt === jkt, 'the access token\'s cnf.jkt is not the client\'s key');
    check(typeof tokens.refresh_token === 'string', 'no refresh_token');
    const claims = tokens.claims();
    check(claims?.nonce === nonce, 'the ID token does not echo the nonce');
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    check(aud.includes(cfg.clientId), `ID token aud ${JSON.stringify(claims.aud)}`);
    seen.token_type = tokens.token_type;
    seen.scope = tokens.scope;
    seen.claims = claims;
    return tokens;
  });

  await step('userinfo', async () => {
    const info = await client.fetchUserInfo(config, tokens.access_token, seen.claims.sub, { DPoP });
    check(typeof info.email === 'string' && info.email.toLowerCase() === cfg.email.toLowerCase(),
      `userinfo email ${info.email}`);
    seen.userinfo = info;
  });

  await step('protected resource', async () => {
    const response = await client.fetchProtectedResource(config, tokens.access_token,
      new URL(`${cfg.issuer}/api/users/me`), 'GET', undefined, undefined, { DPoP });
    check(response.status === 200, `/api/users/me answered ${response.status}`);
    const me = await response.json();
    check(me.id === seen.claims.sub, `/api/users/me id ${me.id}, the ID token's sub ${seen.claims.sub}`);
    seen.resource_status = response.status;
  });

  await step('bound token as Bearer', async () => {
    // Without its proof the token is refused, and the challenge names DPoP.
    try {
      await client.fetchProtectedResource(config, tokens.access_token,
        new URL(`${cfg.issuer}/api/users/me`), 'GET');
    } catch (err) {
      check(err instanceof client.WWWAuthenticateChallengeError,
        `a Bearer use of the bound token: ${describeError(err)}`);
      const challenge = err.cause.find((c) => c.scheme === 'dpop');
      check(challenge, `no DPoP challenge: ${JSON.stringify(err.cause)}`);
      check(challenge.parameters.error === 'invalid_token', `DPoP challenge error=${challenge.parameters.error}`);
      check(typeof challenge.parameters.algs === 'string' && challenge.parameters.algs.split(' ').includes('ES256'),
        `DPoP challenge algs=${challenge.parameters.algs}`);
      seen.as_bearer = { status: err.status, error: challenge.parameters.error };
      return;
    }
    throw new StepError('the bound access token worked as a Bearer token');
  });

  const refreshed = await step('refresh', async () => {
    const next = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
    check(next.token_type === 'dpop', `refreshed token_type ${next.token_type}`);
    check(jwtClaims(next.access_token).cnf?.jkt === jkt, 'the refreshed access token is bound to another key');
    check(next.refresh_token && next.refresh_token !== tokens.refresh_token, 'the refresh token did not rotate');
    seen.refresh_token_type = next.token_type;
    return next;
  });

  await step('refresh with another key', async () => {
    const thief = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    try {
      await client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP: thief });
    } catch (err) {
      check(err.error === 'invalid_grant', `refresh with another key: ${describeError(err)}`);
      seen.other_key = err.error;
      return;
    }
    throw new StepError('a refresh with another DPoP key succeeded');
  });

  await step('refresh after the other key', async () => {
    const next = await client.refreshTokenGrant(config, refreshed.refresh_token, undefined, { DPoP });
    check(next.token_type === 'dpop', `token_type ${next.token_type}`);
    check(jwtClaims(next.access_token).cnf?.jkt === jkt, 'the access token is bound to another key');
    seen.refresh_after_other_key = next.token_type;
  });

  seen.nonce_challenges = wire.filter((r) => r.nonce_challenge).length;
  seen.requests = wire;
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
