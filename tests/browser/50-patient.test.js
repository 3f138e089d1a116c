// A patient signs in with NHS login (the demo provider playing it) and sees who viewed their
// record, and downloads it; a patient proved only to P5 sees general information.
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
  await check(page, 'patient-signin');
  await page.getByRole('button', { name: 'Continue to NHS login' }).click();
  await assertText(page, 'h1', 'Demo NHS login');
  const login = demo.patient_logins.find((l) => l.nhs_number === patient && l.level === 'P9');
  assert.ok(login, 'the patient has a P9 NHS login account in demo.json');
  await page.locator(`button[value="${login.login_id}"]`).click();
  await page.waitForURL(/\/my-record$/);
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

  // Proved to P9, the patient changes their own choice online, at once.
  await page.getByRole('link', { name: /Opt out of sharing your record/ }).click();
  await assertText(page, 'h1', 'Sharing your record');
  await check(page, 'patient-sharing-choice');
  await page.getByLabel('No, opt me out').check();
  await page.getByRole('button', { name: 'Save my choice' }).click();
  await assertText(page, 'h1', 'You have opted out');
  await check(page, 'patient-opted-out');
  await page.getByLabel(/Yes, share my record/).check();
  await page.getByRole('button', { name: 'Save my choice' }).click();
  await assertText(page, 'h1', 'Your record is shared again');
  await page.getByRole('link', { name: 'Back to who viewed your record' }).click();
  await assertText(page, 'h1', 'Who viewed your record');

  // The patient's session names only their own record: no way to ask for another's.
  const other = await page.request.get(`/my-record?patient=${demo.patients.gp_only[0]}`);
  assert.ok((await other.text()).includes(patient.slice(0, 3)), 'still the signed-in patient');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.goto('/my-record');
  await assertText(page, 'h1', 'See who viewed your record');
  await ctx.close();
});

test('a patient proved only to P5 sees general information and how to prove who they are', async () => {
  const { ctx, page } = await context(browser);
  await page.goto('/my-record/signin');
  await page.getByRole('button', { name: 'Continue to NHS login' }).click();
  const p5 = demo.patient_logins.find((l) => l.level === 'P5');
  assert.ok(p5, 'demo.json names a P5 patient');
  await page.locator(`button[value="${p5.login_id}"]`).click();
  await page.waitForURL(/\/my-record$/);
  await assertText(page, 'h1', 'Prove who you are');
  const text = await bodyText(page);
  assert.ok(text.includes('level P5') && text.includes('(level P9)'), text);
  assert.ok(!text.includes(p5.nhs_number), 'no NHS number shown below P9');
  await check(page, 'patient-general-information');
  await ctx.close();
});
