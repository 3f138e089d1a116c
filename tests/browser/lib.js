// Shared helpers for the browser journeys: Chromium from Debian driven by playwright-core,
// axe-core injected into every page we check, screenshots to target/screenshots/.
// The runner (scripts/browser-test) starts `mcr demo` and passes its data directory in
// MCR_DEMO_DIR; everything else is read from DIR/demo.json.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');
const { chromium } = require('playwright-core');

const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const SCREENSHOTS = path.resolve(__dirname, '..', '..', 'target', 'screenshots');
const AXE_LOG = path.join(SCREENSHOTS, 'axe-results.jsonl');

const demoDir = process.env.MCR_DEMO_DIR;
if (!demoDir) throw new Error('MCR_DEMO_DIR is not set: run the journeys with scripts/browser-test');
const demo = JSON.parse(fs.readFileSync(path.join(demoDir, 'demo.json'), 'utf8'));
const BASE = demo.gateway_url.replace(/\/$/, '');

fs.mkdirSync(SCREENSHOTS, { recursive: true });

async function launch() {
  return chromium.launch({
    executablePath: process.env.MCR_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A fresh browser profile (cookies and all). `bypassCSP` only lets the test inject axe-core:
// the pages themselves carry no inline script.
async function context(browser) {
  const ctx = await browser.newContext({
    baseURL: BASE,
    bypassCSP: true,
    acceptDownloads: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
  });
  const page = await ctx.newPage();
  // A dialog would mean text from a source ran as script; any page error is a bug.
  page.problems = [];
  page.on('dialog', async (d) => {
    page.problems.push(`a page opened a dialog: ${d.message()}`);
    await d.dismiss();
  });
  page.on('pageerror', (e) => page.problems.push(`script error on the page: ${e.message}`));
  return { ctx, page };
}

// Run axe-core on the page (WCAG 2.1 A and AA), log the result, fail on any violation; then
// take a full-page screenshot named `name`.
async function check(page, name) {
  await page.waitForLoadState('load');
  assert.deepEqual(page.problems, [], `problems on ${name}`);
  const hasAxe = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!hasAxe) await page.addScriptTag({ content: AXE_SOURCE });
  const result = await page.evaluate(async (tags) => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return {
      violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) })),
      passes: r.passes.length,
    };
  }, AXE_TAGS);
  fs.appendFileSync(AXE_LOG, JSON.stringify({ page: name, url: page.url().replace(BASE, ''), violations: result.violations.length, details: result.violations }) + '\n');
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
  assert.deepEqual(result.violations, [], `axe-core found WCAG 2.1 A/AA violations on ${name} (${page.url()})`);
  // Hostile or long text must never push the page sideways.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `${name} scrolls sideways by ${overflow}px: something broke the layout`);
}

// Staff sign-in through the demo identity provider, as `label` (part of the user's button).
async function signIn(page, userName) {
  await page.goto('/signin');
  await check(page, 'staff-signin');
  await page.click('#signin');
  await page.getByRole('button', { name: new RegExp(userName) }).click();
  await page.waitForURL(/\/app/);
  await assertText(page, 'h1', 'Find a patient');
}

async function assertText(page, selector, text) {
  const got = await page.locator(selector).first().innerText();
  assert.ok(got.includes(text), `expected ${selector} to contain "${text}", got "${got}"`);
}

async function bodyText(page) {
  return page.locator('main').innerText();
}

async function findByNhs(page, nhs) {
  await page.goto('/app');
  await page.fill('#nhs', nhs);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForSelector('#results');
}

function source(id) {
  const s = demo.sources.find((x) => x.id === id);
  if (!s) throw new Error(`no source ${id} in demo.json`);
  return s;
}

// PUT the source's /_control/behaviour (mutual TLS with the demo's gateway certificate when
// the source serves HTTPS).
function setBehaviour(id, behaviour) {
  const url = new URL('/_control/behaviour', source(id).url);
  const body = JSON.stringify(behaviour);
  const pki = path.join(demoDir, 'pki');
  const tls = url.protocol === 'https:'
    ? { ca: fs.readFileSync(path.join(pki, 'ca.pem')), cert: fs.readFileSync(path.join(pki, 'MCR01.pem')), key: fs.readFileSync(path.join(pki, 'MCR01.key.pem')) }
    : {};
  const mod = url.protocol === 'https:' ? https : require('node:http');
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'PUT', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, ...tls }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode < 300 ? resolve() : reject(new Error(`control ${id}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

module.exports = { assert, launch, context, check, signIn, assertText, bodyText, findByNhs, setBehaviour, demo, BASE };
