// SMART App Launch: the clinician, signed in to their own GP system (the demo's host system,
// which shares the region's single sign-on as a smartcard sign-in does), opens a patient in My
// Care Record from it: the patient's record opens with no sign-in page and no search, after
// the same governance steps as any view. A launch used twice, and one from a system that is
// not registered, are refused with a sentence. axe-core runs on every page, the host's too.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, bodyText, demo, BASE } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const host = demo.launch_hosts && demo.launch_hosts[0];

test('demo.json names a host system that may launch', () => {
  assert.ok(host, 'demo.json lists launch_hosts');
  assert.ok(host.iss.startsWith('http') && host.patients.length > 0, JSON.stringify(host));
});

test('an EHR launch opens the right patient with no sign-in page and no search', async () => {
  const { ctx, page } = await context(browser);
  const seen = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) seen.push(f.url()); });
  let launchUrl;
  page.on('request', (r) => { if (r.url().includes('/launch?iss=')) launchUrl = r.url(); });

  // The clinician's own system: signed in there, with their smartcard (here: a demo user).
  await page.goto(host.url);
  await check(page, 'ehr-home');
  await page.getByRole('link', { name: 'Sign in' }).click();
  await check(page, 'ehr-signin');
  await page.getByRole('button', { name: /Asha Patel/ }).click();
  await page.waitForSelector('table');
  await check(page, 'ehr-patients');

  const nhs = host.patients[0];
  const row = page.locator('tr', { hasText: nhs.replace(/\s/g, '') });
  const name = (await row.locator('td').first().innerText()).trim();
  const fromHere = seen.length;
  await row.getByRole('link').click();
  await page.waitForURL(new RegExp(`/app/patient/${nhs}`));

  const journey = seen.slice(fromHere);
  const gatewayPages = journey.filter((u) => u.startsWith(BASE));
  assert.ok(!gatewayPages.some((u) => /\/signin(\?|$)/.test(u) || /\/app(\?|$)/.test(u)),
    `no sign-in page and no search: ${journey.join(' -> ')}`);
  assert.ok(launchUrl && launchUrl.includes(encodeURIComponent(host.iss)), `launched with iss: ${launchUrl}`);

  // The same governance steps as any view, then that patient's record.
  const h1 = await page.locator('h1').first().innerText();
  if (h1.includes('Are you caring for this person?')) {
    await check(page, 'launch-relationship');
    await page.getByRole('link', { name: 'I am caring for this patient' }).click();
    await page.fill('#reason', 'Seeing the patient in surgery today.');
    await page.getByRole('button', { name: 'Record that I am caring for this patient' }).click();
  }
  if ((await page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await check(page, 'launch-ask-permission');
    await page.getByRole('button', { name: 'The patient has given permission' }).click();
  }
  await page.waitForSelector('#sources-heading');
  const text = await bodyText(page);
  const family = name.split(' ').pop();
  assert.ok(text.toUpperCase().includes(family.toUpperCase()), `the record is ${name}'s`);
  assert.ok(page.url().includes(`/app/patient/${nhs}`));
  await check(page, 'launch-record');

  // The same launch again: refused, never a second view.
  await page.goto(launchUrl);
  assert.ok((await bodyText(page)).includes('has already been used'), 'a replayed launch is refused');
  await check(page, 'launch-replayed');
  await ctx.close();
});

test('a launch from a system that is not registered is refused, and the standalone launch lists the hosts', async () => {
  const { ctx, page } = await context(browser);
  await page.goto('/launch?iss=' + encodeURIComponent('https://ehr.elsewhere.example/fhir') + '&launch=abc');
  assert.ok((await bodyText(page)).includes('is not one allowed to'));
  await check(page, 'launch-unknown-host');
  await page.goto('/launch/standalone');
  assert.ok((await bodyText(page)).includes(host.name));
  await check(page, 'launch-standalone');
  await ctx.close();
});
