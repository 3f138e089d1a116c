// A SMART App Launch 2.x host system (an EHR) for crates/mcr/tests/smart_launch.rs, built on an
// authorization server this project did not write: the `oidc-provider` package. It registers
// the gateway as a confidential client (client_secret_basic, PKCE S256 required), takes the
// SMART `launch` and `aud` parameters (oidc-provider's extraParams), binds each authorization
// to its launch's patient at the consent step and adds `patient` to the token response (as
// SMART's launch context), and serves the FHIR side at {issuer}/fhir:
// `.well-known/smart-configuration` and `Patient/{id}` (bearer token checked with the
// provider). Its login and consent steps answer themselves, as a clinician already signed in
// to their own system would see them.
//
// A launch is what the EHR hands the viewer when the clinician clicks "open in My Care
// Record": `POST /_launch {"patient": id, "user": sub, "ttl": seconds}` answers `{"launch"}`,
// usable once, until it expires. A standalone launch (no `launch`, scope `launch/patient`)
// gets SMART_STANDALONE_PATIENT, as if the clinician had picked that patient here.
//
// Environment: SMART_REDIRECT_URI, SMART_CLIENT_SECRET, SMART_PATIENTS (JSON: id -> NHS number),
// SMART_STANDALONE_PATIENT, SMART_USER (the standalone user). Prints "issuer URL" and "fhir URL".
import http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const redirect = process.env.SMART_REDIRECT_URI;
const secret = process.env.SMART_CLIENT_SECRET;
if (!redirect || !secret) {
  console.error('SMART_REDIRECT_URI and SMART_CLIENT_SECRET are required');
  process.exit(2);
}
const patients = JSON.parse(process.env.SMART_PATIENTS || '{}');
const standalonePatient = process.env.SMART_STANDALONE_PATIENT || Object.keys(patients)[0];
const standaloneUser = process.env.SMART_USER || 'interop.user';

const launches = new Map(); // launch -> { patient, user, expires, used }
const contexts = new Map(); // grantId -> { patient }

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'smart-host-rs256', use: 'sig', alg: 'RS256' };

function json(res, status, body, type = 'application/json') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
  });
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const fhir = `${issuer}/fhir`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'mcr-viewer',
      client_secret: secret,
      redirect_uris: [redirect],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [jwk] },
    pkce: { required: () => true },
    scopes: ['openid', 'fhirUser', 'launch', 'launch/patient', 'patient/Patient.rs'],
    claims: { openid: ['sub'], fhirUser: ['fhirUser'] },
    extraParams: ['launch', 'aud'],
    conformIdTokenClaims: false,
    // Every authorization passes the consent step, where its launch is checked and bound: only
    // the grant that step just made is ever loaded, never an earlier one.
    loadExistingGrant: async (ctx) => {
      const id = ctx.oidc.result && ctx.oidc.result.consent && ctx.oidc.result.consent.grantId;
      return id ? ctx.oidc.provider.Grant.find(id) : undefined;
    },
    cookies: { keys: ['mcr-smart-host-test-only'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id, fhirUser: `${fhir}/Practitioner/${id}` }) }),
  });

  // SMART's launch context: `patient` beside the tokens.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200 && ctx.body && ctx.body.access_token) {
      const at = await provider.AccessToken.find(ctx.body.access_token);
      const c = at && contexts.get(at.grantId);
      if (c) ctx.body.patient = c.patient;
    }
  });

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    try {
      if (req.method === 'POST' && url.pathname === '/_launch') {
        const { patient, user, ttl } = JSON.parse((await readBody(req)) || '{}');
        const launch = randomBytes(16).toString('hex');
        launches.set(launch, { patient, user: user || standaloneUser, expires: Date.now() + 1000 * (ttl ?? 300), used: false });
        return json(res, 200, { launch });
      }
      if (url.pathname === '/fhir/.well-known/smart-configuration') {
        return json(res, 200, {
          issuer,
          jwks_uri: `${issuer}/jwks`,
          authorization_endpoint: `${issuer}/auth`,
          token_endpoint: `${issuer}/token`,
          token_endpoint_auth_methods_supported: ['client_secret_basic'],
          grant_types_supported: ['authorization_code'],
          response_types_supported: ['code'],
          scopes_supported: ['openid', 'fhirUser', 'launch', 'launch/patient', 'patient/Patient.rs'],
          code_challenge_methods_supported: ['S256'],
          capabilities: ['launch-ehr', 'launch-standalone', 'client-confidential-symmetric', 'context-ehr-patient', 'context-standalone-patient', 'sso-openid-connect', 'permission-v2'],
        });
      }
      const p = url.pathname.match(/^\/fhir\/Patient\/([^/]+)$/);
      if (p) {
        const token = (req.headers.authorization || '').replace(/^Bearer /i, '');
        const at = token && (await provider.AccessToken.find(token));
        if (!at) return json(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] }, 'application/fhir+json');
        const id = decodeURIComponent(p[1]);
        if (!(id in patients)) return json(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] }, 'application/fhir+json');
        return json(res, 200, {
          resourceType: 'Patient',
          id,
          identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: patients[id] }],
        }, 'application/fhir+json');
      }
      const m = url.pathname.match(/^\/interaction\/([^/?]+)/);
      if (!m) return callback(req, res);
      const details = await provider.interactionDetails(req, res);
      const launchId = details.params.launch;
      const launch = launchId ? launches.get(launchId) : undefined;
      if (launchId && (!launch || launch.used || launch.expires <= Date.now())) {
        return provider.interactionFinished(req, res, { error: 'invalid_request', error_description: 'the launch is unknown, used or expired' }, { mergeWithLastSubmission: false });
      }
      if (details.prompt.name === 'login') {
        const accountId = launch ? launch.user : standaloneUser;
        return provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
      }
      const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      if (launch) launch.used = true;
      const scopes = String(details.params.scope).split(' ');
      const patient = launch ? launch.patient : (scopes.includes('launch/patient') ? standalonePatient : undefined);
      if (patient !== undefined) contexts.set(grantId, { patient });
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e && e.message));
    }
  });
  console.log(`issuer ${issuer}`);
  console.log(`fhir ${fhir}`);
});
