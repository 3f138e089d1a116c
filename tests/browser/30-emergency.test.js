// An A&E doctor uses emergency access for a patient who cannot be asked; the privacy officer
// sees the case in the review queue and records an outcome; the audit search finds it.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, assertText, bodyText, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const patient = demo.patients.needs_permission[0];

test('emergency access, then the privacy officer reviews it', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Chidi Okafor');
  await page.goto(`/app/patient/${patient}`);
  await assertText(page, 'h1', "Ask the patient's permission");
  await page.getByRole('link', { name: 'Use emergency access' }).click();
  await assertText(page, 'h1', 'Emergency access');
  // Submitting without a reason: the error summary.
  await page.getByRole('button', { name: 'Start emergency access' }).click();
  await assertText(page, '.nhsuk-error-summary', 'There is a problem');
  await check(page, 'clinician-emergency-error');
  await page.locator('input[name="reason"]').first().check();
  await page.fill('#reason-text', 'Unconscious after a road traffic collision; no family present.');
  await page.getByRole('button', { name: 'Start emergency access' }).click();
  await page.waitForSelector('#sources-heading');
  assert.ok((await bodyText(page)).toLowerCase().includes('emergency'), 'the record should say access was by emergency');
  await check(page, 'clinician-record-emergency');
  await ctx.close();

  const po = await context(browser);
  await signIn(po.page, 'Helen Wright');
  await po.page.getByRole('link', { name: 'Review queue' }).click();
  await assertText(po.page, 'h1', 'Access review queue');
  const card = po.page.locator('.app-case', { hasText: 'Chidi Okafor' }).first();
  assert.ok(await card.isVisible(), 'the emergency access is in the review queue');
  await check(po.page, 'privacy-review-queue');
  await card.getByLabel('Appropriate').check();
  await card.getByLabel('Note').fill('Checked with the A&E consultant: appropriate.');
  await card.getByRole('button', { name: 'Record outcome' }).click();
  await assertText(po.page, '[role=status]', 'Outcome recorded');
  await check(po.page, 'privacy-review-recorded');

  await po.page.getByRole('link', { name: 'Audit search' }).click();
  await po.page.fill('#patient', patient);
  await po.page.fill('#from', 'yesterday');
  await po.page.getByRole('button', { name: 'Search' }).click();
  await assertText(po.page, '.nhsuk-error-summary', 'From must be a real date');
  await check(po.page, 'privacy-audit-search-error');
  await po.page.fill('#from', '');
  await po.page.getByRole('button', { name: 'Search' }).click();
  const results = await bodyText(po.page);
  for (const action of ['emergency-access', 'view-record', 'review-access']) {
    assert.ok(results.includes(action), `audit search should list ${action}`);
  }
  await check(po.page, 'privacy-audit-search');
  await po.ctx.close();
});
