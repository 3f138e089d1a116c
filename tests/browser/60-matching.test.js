// Patient matching (issue 19): records staff find a twin's hospital record and a parent's
// record carrying their child's NHS number in the review queue, compare each side by side and
// decide; a clinician opening the child's record is warned of the possible wrong NHS number.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, assertText, bodyText, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const child = demo.patients.matching_wrong_nhs_number[0];

test('the matching queue: compare side by side, rule out a twin, and the warning in the record', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Grace Obi');
  await page.getByRole('link', { name: 'Patient matching' }).first().click();
  await assertText(page, 'h1', 'Patient matching');
  const before = await bodyText(page);
  assert.ok(before.includes('Possible twin'), 'the twin pair is explained');
  assert.ok(before.includes('Possible wrong NHS number'), 'the wrong NHS number is flagged');
  await check(page, 'matching-queue');
  const waiting = Number((before.match(/Waiting to be checked \((\d+)\)/) || [])[1]);
  assert.ok(waiting >= 2, `pairs waiting: ${waiting}`);

  // The twin's pair: not a match. It leaves the queue and is never linked by a later sync.
  const twinCard = page.locator('section.nhsuk-card', { hasText: 'Possible twin' }).first();
  await twinCard.getByRole('button', { name: 'Not a match' }).click();
  await assertText(page, '#decision-recorded', 'Decision recorded');
  const after = await bodyText(page);
  const left = Number((after.match(/Waiting to be checked \((\d+)\)/) || [])[1]);
  assert.equal(left, waiting - 1, 'one pair fewer');
  await check(page, 'matching-queue-decided');
  await ctx.close();

  // A clinician opening the child's record is told a record elsewhere carries this number.
  const gp = await context(browser);
  await signIn(gp.page, 'Asha Patel');
  await gp.page.goto(`/app/patient/${child}`);
  if ((await gp.page.locator('h1').first().innerText()).includes('Are you caring for this person?')) {
    await gp.page.getByRole('link', { name: 'I am caring for this patient' }).click();
    await gp.page.fill('#reason', 'Seeing the patient in clinic today.');
    await gp.page.getByRole('button', { name: 'Record that I am caring for this patient' }).click();
  }
  if ((await gp.page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await gp.page.getByRole('button', { name: 'The patient has given permission' }).click();
  }
  await gp.page.waitForSelector('#identity-warnings');
  await assertText(gp.page, '#identity-warnings', 'Possible wrong NHS number');
  await check(gp.page, 'matching-record-warning');
  await gp.ctx.close();
});
