// An independent, standards-compliant OpenID provider (the `oidc-provider` package) on
// loopback, for crates/mcr/tests/oidc_interop.rs. It registers the gateway as a confidential
// client (client_secret_basic, PKCE required), signs with a fresh RS256 key, and answers its
// login and consent prompts itself for one test account, so the test drives a real
// authorization code flow end to end.
//
// Environment: OIDC_REDIRECT_URI (one or more, space-separated), OIDC_CLIENT_SECRET, OIDC_USER_ORG. Prints "issuer URL".
//
// With OIDC_CIS2_ACCOUNTS (a JSON object: account id -> {acr, claims}) it issues NHS CIS2-shaped
// claims instead: the ID token carries only `sub` and the sign-in's `acr`, and the account's
// claims (name, `nhsid_nrbac_roles` for the `nationalrbacaccess` scope, `selected_roleid`,
// `authentication_assurance_level`) come from its UserInfo endpoint, as CIS2 releases them.
// The account signed in is the authorization request's `login_hint`.
//
// With OIDC_NHS_LOGIN_ACCOUNTS (a JSON object: account id -> claims) it also plays NHS login for
// a second client, `mcr-patient`, registered as NHS login registers its relying parties:
// private_key_jwt client authentication (RS512) with a key pair made here, its private key
// written (PKCS#8 PEM) to OIDC_NHS_LOGIN_KEY_FILE for the gateway; ID tokens signed RS512,
// carrying `identity_proofing_level` and `vot` (scope openid), with `nhs_number` released at
// UserInfo (scope profile). The sign-in must ask for vectors of trust (`vtr`) or it is denied;
// the account is the request's `login_hint`.
import http from 'node:http';
import fs from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const redirect = process.env.OIDC_REDIRECT_URI;
const secret = process.env.OIDC_CLIENT_SECRET;
if (!redirect || !secret) {
  console.error('OIDC_REDIRECT_URI and OIDC_CLIENT_SECRET are required');
  process.exit(2);
}
const account = { sub: 'interop.user', name: 'Dr Ida Interop', role: 'clinician', org: process.env.OIDC_USER_ORG || 'RWH01' };
const cis2 = process.env.OIDC_CIS2_ACCOUNTS ? JSON.parse(process.env.OIDC_CIS2_ACCOUNTS) : null;
const accountClaims = (id) => nhsClaims(id) || (cis2 ? (cis2[id] ? { sub: id, ...cis2[id].claims } : undefined) : (id === account.sub ? account : undefined));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', use: 'sig', alg: 'RS256' };

const nhs = process.env.OIDC_NHS_LOGIN_ACCOUNTS ? JSON.parse(process.env.OIDC_NHS_LOGIN_ACCOUNTS) : null;
const nhsKeys = [];
const nhsClients = [];
if (nhs) {
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  nhsKeys.push({ ...signing.export({ format: 'jwk' }), kid: 'interop-rs512', use: 'sig', alg: 'RS512' });
  const client = generateKeyPairSync('rsa', { modulusLength: 2048 });
  fs.writeFileSync(process.env.OIDC_NHS_LOGIN_KEY_FILE, client.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  nhsClients.push({
    client_id: 'mcr-patient',
    redirect_uris: redirect.split(' ').filter(Boolean),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS512',
    id_token_signed_response_alg: 'RS512',
    jwks: { keys: [{ ...client.publicKey.export({ format: 'jwk' }), kid: 'mcr-patient-key', use: 'sig', alg: 'RS512' }] },
  });
}
const nhsClaims = (id) => (nhs && nhs[id] ? { sub: id, ...nhs[id] } : undefined);

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'mcr-gateway',
      client_secret: secret,
      redirect_uris: redirect.split(' ').filter(Boolean),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }, ...nhsClients],
    jwks: { keys: [jwk, ...nhsKeys] },
    ...(nhs ? {
      extraParams: ['vtr'],
      enabledJWA: {
        idTokenSigningAlgValues: ['RS256', 'RS512'],
        clientAuthSigningAlgValues: ['RS256', 'RS512'],
      },
    } : {}),
    pkce: { required: () => true },
    ...(cis2
      ? {
        claims: { openid: ['sub', 'authentication_assurance_level', 'identity_proofing_level', 'vot'], profile: ['name', 'nhs_number'], nationalrbacaccess: ['nhsid_nrbac_roles'], selectedrole: ['selected_roleid'] },
        scopes: ['openid', 'profile', 'nationalrbacaccess', 'selectedrole'],
        acrValues: ['AAL1_USERPASS', 'AAL2_OR_3', 'AAL3_ANY'],
        conformIdTokenClaims: true,
      }
      : nhs
        ? { claims: { openid: ['sub', 'identity_proofing_level', 'vot'], profile: ['name', 'role', 'org', 'nhs_number'] }, conformIdTokenClaims: true }
        : { claims: { openid: ['sub'], profile: ['name', 'role', 'org'] }, conformIdTokenClaims: false }),
    cookies: { keys: ['mcr-interop-test-only'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, id) => {
      const claims = accountClaims(id);
      return claims ? { accountId: id, claims: async () => claims } : undefined;
    },
  });

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const m = req.url.match(/^\/interaction\/([^/?]+)/);
    if (!m) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        if (details.params.client_id === 'mcr-patient' && !/P9/.test(details.params.vtr || '')) {
          await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'no vtr' }, { mergeWithLastSubmission: false });
          return;
        }
        const hinted = details.params.login_hint;
        const id = cis2 || (nhs && nhs[hinted]) ? hinted : account.sub;
        const login = cis2 && cis2[id] ? { accountId: id, acr: cis2[id].acr } : { accountId: id };
        await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
      } else {
        const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        grant.addOIDCScope(details.params.scope);
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e && e.message));
    }
  });
  console.log(`issuer ${issuer}`);
});
