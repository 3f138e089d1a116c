// An independent, standards-compliant OpenID provider (the `oidc-provider` package) on
// loopback, for crates/mcr/tests/oidc_interop.rs. It registers the gateway as a confidential
// client (client_secret_basic, PKCE required), signs with a fresh RS256 key, and answers its
// login and consent prompts itself for one test account, so the test drives a real
// authorization code flow end to end.
//
// Environment: OIDC_REDIRECT_URI (one or more, space-separated), OIDC_CLIENT_SECRET, OIDC_USER_ORG. Prints "issuer URL".
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const redirect = process.env.OIDC_REDIRECT_URI;
const secret = process.env.OIDC_CLIENT_SECRET;
if (!redirect || !secret) {
  console.error('OIDC_REDIRECT_URI and OIDC_CLIENT_SECRET are required');
  process.exit(2);
}
const account = { sub: 'interop.user', name: 'Dr Ida Interop', role: 'clinician', org: process.env.OIDC_USER_ORG || 'RWH01' };

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', use: 'sig', alg: 'RS256' };

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
    }],
    jwks: { keys: [jwk] },
    pkce: { required: () => true },
    claims: { openid: ['sub'], profile: ['name', 'role', 'org'] },
    conformIdTokenClaims: false,
    cookies: { keys: ['mcr-interop-test-only'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, id) => (id === account.sub ? { accountId: id, claims: async () => account } : undefined),
  });

  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const m = req.url.match(/^\/interaction\/([^/?]+)/);
    if (!m) return callback(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
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
