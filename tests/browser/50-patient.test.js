// A patient signs in (demo sign-in) and sees who viewed their record, and downloads it.
'use strict';
const { test, before, after } = require('node:test');
const fs = require('node:fs');
const { assert, launch, context, check, signIn, assertText, bodyText, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const patient = demo.patients.all_four_sources[0];

test('the patient sees each view of their record and can download the list', async () => {
  // Make sure there is a view to see (the GP journey records one too).
  const gp = await context(browser);
  await signIn(gp.page, 'Asha Patel');
  await gp.page.goto(`/app/patient/${patient}`);
  if ((await gp.page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await gp.page.getByRole('button', { name: 'The patient has given permission' }).click();
  }
  await gp.page.waitForSelector('#sources-heading');
  await gp.ctx.close();

  const { ctx, page } = await context(browser);
  await page.goto('/my-record');
  await assertText(page, 'h1', 'See who viewed your record');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assertText(page, '.nhsuk-error-summary', 'Select who you are');
  await check(page, 'patient-signin-error');
  await page.locator(`input[value="${patient}"]`).check();
  await page.getByRole('button', { name: 'Sign in' }).click();
  await assertText(page, 'h1', 'Who viewed your record');
  const text = await bodyText(page);
  assert.ok(text.includes('Doctor'), 'the GP\'s view is listed with their role');
  assert.ok(/permission/i.test(text), 'the reason is in plain words');
  await check(page, 'patient-access-history');

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: /Download this list/ }).click(),
  ]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  assert.ok(csv.startsWith('time,organisation,organisation_code,role,reason,explanation'), csv.slice(0, 200));
  assert.ok(csv.split('\r\n').length > 2, 'the CSV lists the views');

  // The patient's session names only their own record: no way to ask for another's.
  const other = await page.request.get(`/my-record?patient=${demo.patients.gp_only[0]}`);
  assert.ok((await other.text()).includes(patient.slice(0, 3)), 'still the signed-in patient');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.goto('/my-record');
  await assertText(page, 'h1', 'See who viewed your record');
  await ctx.close();
});
