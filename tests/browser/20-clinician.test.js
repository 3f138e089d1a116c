// A GP finds a patient, records the patient's permission in one click and reads the record
// from every source; the hostile patient's text is shown as text without breaking the layout.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, assertText, bodyText, findByNhs, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const allFour = demo.patients.all_four_sources[0];
const hostile = demo.patients.hostile_text[0];

async function openWithPermission(page, nhs, shot) {
  await page.goto(`/app/patient/${nhs}`);
  if ((await page.locator('h1').first().innerText()).includes('Are you caring for this person?')) {
    await page.getByRole('link', { name: 'I am caring for this patient' }).click();
    await page.fill('#reason', 'Seeing the patient in clinic today.');
    await page.getByRole('button', { name: 'Record that I am caring for this patient' }).click();
  }
  if ((await page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await check(page, `${shot}-ask-permission`);
    await page.getByRole('button', { name: 'The patient has given permission' }).click();
  }
  await page.waitForSelector('#sources-heading');
}

test('sign in, find a patient, record permission, read the record', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Asha Patel');
  await check(page, 'clinician-find-patient');

  // A search with a wrong NHS number: the error summary, with what was typed kept.
  await page.fill('#nhs', '999 999 9990');
  await page.getByRole('button', { name: 'Search' }).click();
  await assertText(page, '.nhsuk-error-summary', 'There is a problem');
  assert.equal(await page.inputValue('#nhs'), '999 999 9990');
  await check(page, 'clinician-search-error');

  await findByNhs(page, allFour);
  await assertText(page, '#results', '1 patient found');
  await check(page, 'clinician-search-results');
  await page.locator('table a').first().click();

  if ((await page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await check(page, 'clinician-ask-permission');
    await page.getByRole('button', { name: 'The patient has given permission' }).click();
  }
  await page.waitForSelector('#sources-heading');
  await assertText(page, '#sources-heading', 'Every source answered');
  const text = await bodyText(page);
  for (const section of ['Summary', 'Current medications', 'Legal and end-of-life', 'Allergies']) assert.ok(text.includes(section), `record lacks ${section}`);
  await check(page, 'clinician-record');
  await ctx.close();
});

test('hostile text from a source is shown as text and does not break the layout', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Asha Patel');
  await openWithPermission(page, hostile, 'hostile');
  const html = await page.content();
  assert.ok(!/<script>alert/i.test(html), 'a <script> from a source reached the page as markup');
  const text = await bodyText(page);
  assert.ok(text.includes('<script>') || text.includes('script'), 'the hostile text should be visible as text');
  await check(page, 'clinician-record-hostile-text');
  await ctx.close();
});
