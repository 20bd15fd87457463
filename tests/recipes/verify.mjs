// The Node recipe of docs/resource-servers.md, as a program the suite runs
// (tests/api/recipes.rs): verifies Tessera access tokens with `jose`.
//
// stdin: {"issuer", "audience", "jwks_uri", "scope",
//         "introspection": null | {"url", "client_id", "client_secret"},
//         "tokens": {name: token}}
// stdout: {name: "accepted" | "refused: why"}
import { createRemoteJWKSet, jwtVerify } from 'jose';

// --- The recipe ---------------------------------------------------------

function resourceServer({ issuer, audience, jwksUri, introspection }) {
  // Fetched on first use, cached, refetched (rate-limited) on an unknown kid.
  const jwks = createRemoteJWKSet(new URL(jwksUri));

  return async function verify(token, requiredScope) {
    const { payload } = await jwtVerify(token, jwks, {
      typ: 'at+jwt', // RFC 9068: refuse ID tokens and other JWTs
      issuer,
      audience,
      algorithms: ['RS256', 'ES256', 'EdDSA'], // never `none` or HS*
      requiredClaims: ['exp', 'iat', 'sub', 'jti'],
      clockTolerance: 30, // seconds of skew, as Tessera's own verifier
    });
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
    if (!scopes.includes(requiredScope)) {
      throw Object.assign(new Error(`insufficient_scope: needs ${requiredScope}`), { status: 403 });
    }
    if (introspection) {
      // High-value call: ask Tessera whether the token was revoked.
      const response = await fetch(introspection.url, {
        method: 'POST',
        headers: {
          authorization: 'Basic ' + Buffer.from(
            `${encodeURIComponent(introspection.clientId)}:${encodeURIComponent(introspection.clientSecret)}`,
          ).toString('base64'),
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
      });
      if (!response.ok) {
        // Fail closed: an unreachable /introspect is a 503, not a pass.
        throw Object.assign(new Error(`introspection failed: ${response.status}`), { status: 503 });
      }
      if (!(await response.json()).active) {
        throw Object.assign(new Error('token revoked'), { status: 401 });
      }
    }
    return payload;
  };
}

// --- The harness --------------------------------------------------------

let input = '';
for await (const chunk of process.stdin) input += chunk;
const config = JSON.parse(input);
const verify = resourceServer({
  issuer: config.issuer,
  audience: config.audience,
  jwksUri: config.jwks_uri,
  introspection: config.introspection && {
    url: config.introspection.url,
    clientId: config.introspection.client_id,
    clientSecret: config.introspection.client_secret,
  },
});
const results = {};
for (const [name, token] of Object.entries(config.tokens)) {
  try {
    await verify(token, config.scope);
    results[name] = 'accepted';
  } catch (e) {
    // jose's errors (JWTExpired, JWTClaimValidationFailed, ...) are 401s.
    const why = e.code ? `${e.code}: ${e.message}` : e.message;
    results[name] = `refused: ${e.status ?? 401} ${why}`;
  }
}
process.stdout.write(JSON.stringify(results));
