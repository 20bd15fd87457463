// A headless, cookie-keeping user agent for the relying-party tests: it
// does what a person's browser does on Tessera's pages (follow redirects by
// hand, keep cookies per RFC 6265, fill and submit the HTML forms) without a
// browser, so the RP libraries are exercised against real pages.
//
// It knows nothing of OAuth beyond "stop when the navigation reaches this
// URL": the relying party under test decides what the final URL means.

/** The decoded text of an HTML attribute value or text node. */
export function decodeEntities(text) {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, ref) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return Number.isFinite(code) ? String.fromCodePoint(code) : whole;
    }
    return named[ref.toLowerCase()] ?? whole;
  });
}

/** The attributes of one start tag (`<input a="b" c='d' e=f g>`), lower-cased names. */
function attributesOf(tag) {
  const attrs = {};
  const body = tag.replace(/^<[a-z0-9]+/i, '').replace(/\/?>$/, '');
  const re = /([^\s"'>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  for (const m of body.matchAll(re)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/**
 * Every `<form>` of a page: its method, resolved action, the fields a
 * browser would submit (inputs with a name; unchecked boxes left out) and
 * its named submit buttons.
 */
export function formsOf(html, pageUrl) {
  const forms = [];
  for (const m of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form\s*>/gi)) {
    const attrs = attributesOf(m[0].match(/^<form\b[^>]*>/i)[0]);
    const inner = m[1];
    const fields = [];
    const buttons = [];
    for (const t of inner.matchAll(/<(input|button)\b[^>]*>/gi)) {
      const a = attributesOf(t[0]);
      const type = (a.type ?? (t[1].toLowerCase() === 'button' ? 'submit' : 'text')).toLowerCase();
      if (type === 'submit' || type === 'image') {
        buttons.push({ name: a.name, value: a.value ?? '' });
      } else if (a.name !== undefined && !['button', 'reset', 'file'].includes(type)) {
        if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
        fields.push({ name: a.name, type, value: a.value ?? (type === 'checkbox' ? 'on' : '') });
      }
    }
    for (const t of inner.matchAll(/<textarea\b[^>]*>([\s\S]*?)<\/textarea\s*>/gi)) {
      const a = attributesOf(t[0].match(/^<textarea\b[^>]*>/i)[0]);
      if (a.name !== undefined) fields.push({ name: a.name, type: 'textarea', value: decodeEntities(t[1]) });
    }
    forms.push({
      method: (attrs.method ?? 'get').toLowerCase(),
      // A missing or empty action submits to the page's own URL (HTML §4.10.21.3).
      action: new URL(attrs.action || pageUrl, pageUrl).href,
      fields,
      buttons,
      html: m[0],
    });
  }
  return forms;
}

/** What a person reads on an error page: its heading and alert, for failure messages. */
export function describePage(html) {
  const text = (re) => {
    const m = html.match(re);
    return m ? decodeEntities(m[1].replace(/<[^>]*>/g, '')).trim().replace(/\s+/g, ' ') : undefined;
  };
  const parts = [text(/<title[^>]*>([\s\S]*?)<\/title>/i), text(/<h1[^>]*>([\s\S]*?)<\/h1>/i),
    text(/<[^>]+role="alert"[^>]*>([\s\S]*?)<\/[a-z0-9]+>/i)].filter(Boolean);
  return parts.length ? parts.join(' | ') : html.slice(0, 200);
}

/** A cookie jar of RFC 6265 §5: host-only cookies, path matching, expiry. */
export class CookieJar {
  constructor() {
    this.cookies = [];
  }

  /** Stores the `Set-Cookie` headers of a response to a request for `url`. */
  store(url, response) {
    const target = new URL(url);
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrParts] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      // RFC 6265 §5.1.4: the default path is the request path up to its last slash.
      const lastSlash = target.pathname.lastIndexOf('/');
      let path = lastSlash > 0 ? target.pathname.slice(0, lastSlash) : '/';
      let expires = Infinity;
      let secure = false;
      let maxAgeSeen = false;
      for (const attr of attrParts) {
        const [k, ...rest] = attr.split('=');
        const key = k.trim().toLowerCase();
        const v = rest.join('=').trim();
        if (key === 'path' && v.startsWith('/')) path = v;
        else if (key === 'max-age') {
          maxAgeSeen = true;
          const seconds = Number.parseInt(v, 10);
          expires = seconds <= 0 ? 0 : Date.now() + seconds * 1000;
        } else if (key === 'expires' && !maxAgeSeen) {
          const at = Date.parse(v);
          if (!Number.isNaN(at)) expires = at;
        } else if (key === 'secure') secure = true;
      }
      this.cookies = this.cookies.filter((c) => !(c.name === name && c.path === path && c.host === target.host));
      if (expires > Date.now()) this.cookies.push({ name, value, path, host: target.host, expires, secure });
    }
  }

  /** The `Cookie` header a browser sends with a request for `url`, or undefined. */
  header(url) {
    const target = new URL(url);
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires > now);
    const pathMatches = (cookiePath) =>
      target.pathname === cookiePath ||
      (target.pathname.startsWith(cookiePath) &&
        (cookiePath.endsWith('/') || target.pathname[cookiePath.length] === '/'));
    const sent = this.cookies
      .filter((c) => c.host === target.host && pathMatches(c.path) && (!c.secure || target.protocol === 'https:'))
      // RFC 6265 §5.4: longer paths first.
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`);
    return sent.length ? sent.join('; ') : undefined;
  }
}

/** A browser without a screen: one cookie jar, manual redirects, form submission. */
export class UserAgent {
  constructor({ timeoutMs = 15000, log = () => {} } = {}) {
    this.jar = new CookieJar();
    this.timeoutMs = timeoutMs;
    this.log = log;
  }

  /** One request, no redirect followed; returns `{ url, status, location, html, response }`. */
  async request(url, { method = 'GET', form } = {}) {
    const headers = { accept: 'text/html,application/xhtml+xml', 'user-agent': 'tessera-rp-test' };
    const cookie = this.jar.header(url);
    if (cookie) headers.cookie = cookie;
    let body;
    if (form) {
      body = new URLSearchParams(form.map((f) => [f.name, f.value])).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    const response = await fetch(url, {
      method,
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    this.jar.store(url, response);
    const header = response.headers.get('location');
    const location = header ? new URL(header, url).href : undefined;
    const html = await response.text();
    this.log(`${method} ${redactUrl(url)} -> ${response.status}${location ? ` ${redactUrl(location)}` : ''}`);
    return { url, status: response.status, location, html, response };
  }

  /** Submits `form` with `overrides` (name -> value) and the named submit button, as a click would. */
  async submit(form, overrides = {}, button) {
    const fields = form.fields.map((f) => ({ ...f }));
    for (const [name, value] of Object.entries(overrides)) {
      const existing = fields.find((f) => f.name === name);
      if (existing) existing.value = value;
      else fields.push({ name, value });
    }
    if (button && button.name) fields.push({ name: button.name, value: button.value });
    if (form.method === 'post') return this.request(form.action, { method: 'POST', form: fields });
    const target = new URL(form.action);
    target.search = new URLSearchParams(fields.map((f) => [f.name, f.value])).toString();
    return this.request(target.href);
  }
}

/** `url` without its query values: codes and tokens stay out of logs. */
export function redactUrl(url) {
  try {
    const u = new URL(url);
    for (const key of [...u.searchParams.keys()]) {
      if (!['error', 'prompt', 'response_mode', 'state'].includes(key)) u.searchParams.set(key, '…');
    }
    return u.href;
  } catch {
    return '(not a URL)';
  }
}

/**
 * Drives Tessera's authorization pages from `startUrl` until the
 * navigation reaches `redirectUri`: follows redirects, signs in on a page
 * with a password field, approves a consent page. Returns
 * `{ kind: 'redirect', url }` for a redirect to the client, or
 * `{ kind: 'form_post', action, fields, page }` for a page whose form posts to
 * the client (response_mode=form_post). Throws with the page's own words on
 * anything else.
 */
export async function driveAuthorization(ua, startUrl, { redirectUri, email, password, maxSteps = 12 }) {
  const seen = [];
  let step = await ua.request(startUrl);
  for (let i = 0; i < maxSteps; i++) {
    if (step.status >= 300 && step.status < 400) {
      if (!step.location) throw new Error(`${step.status} without a Location from ${redactUrl(step.url)}`);
      if (step.location.startsWith(redirectUri)) {
        seen.push('redirect');
        return { kind: 'redirect', url: step.location, status: step.status, pages: seen };
      }
      step = await ua.request(step.location);
      continue;
    }
    if (step.status !== 200) {
      throw new Error(`page ${redactUrl(step.url)} answered ${step.status}: ${describePage(step.html)}`);
    }
    const forms = formsOf(step.html, step.url);
    const toClient = forms.find((f) => f.action.startsWith(redirectUri));
    if (toClient) {
      seen.push('form_post');
      return {
        kind: 'form_post',
        action: toClient.action,
        method: toClient.method,
        fields: toClient.fields,
        page: step,
        pages: seen,
      };
    }
    const login = forms.find((f) => f.fields.some((x) => x.type === 'password'));
    if (login) {
      if (seen.includes('login')) {
        throw new Error(`the sign-in page came back after signing in: ${describePage(step.html)}`);
      }
      seen.push('login');
      step = await ua.submit(login, { email, password }, login.buttons[0]);
      continue;
    }
    const consent = forms.find((f) => f.buttons.some((b) => b.name === 'decision' && b.value === 'approve'));
    if (consent) {
      seen.push('consent');
      step = await ua.submit(consent, {}, consent.buttons.find((b) => b.value === 'approve'));
      continue;
    }
    throw new Error(`unexpected page at ${redactUrl(step.url)}: ${describePage(step.html)}`);
  }
  throw new Error(`no redirect to ${redirectUri} after ${maxSteps} steps (${seen.join(', ')})`);
}
