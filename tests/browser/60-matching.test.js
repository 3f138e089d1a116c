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
  // A hospital record whose birth date is only a month and a year cannot be matched: listed,
  // with why, so that the hospital can correct it.
  assert.match(before, /Records that could not be read \(1\)/);
  assert.ok(before.includes('Date of birth not a whole date'), 'why it could not be read');
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

// Merge and unmerge of index persons: records staff find two numbers for one person, check
// them side by side, give a reason and merge; the retired number's record then points to the
// one kept; the merge is undone with a reason, and both pages list it.
const [retiredNhs, keptNhs] = demo.patients.duplicated_items.slice(1, 3);
const spaced = (n) => `${n.slice(0, 3)} ${n.slice(3, 6)} ${n.slice(6)}`;

test('merge two index persons after a side-by-side check, then undo it', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Grace Obi');
  await page.goto('/app/matching');
  await page.getByRole('link', { name: 'Merge index persons, or undo a merge' }).click();
  await assertText(page, 'h1', 'Patient matching: merge index persons');
  await check(page, 'merges');

  await page.fill('#retired', retiredNhs);
  await page.fill('#survivor', keptNhs);
  await page.getByRole('button', { name: 'Continue' }).click();
  await assertText(page, 'h1', 'Check before you merge');
  await assertText(page, '#merge-compare', spaced(retiredNhs));
  // Two different demo people: the page says where they differ before anyone merges.
  await assertText(page, '#merge-differs', 'These two differ in date of birth');
  await check(page, 'merge-confirm');

  // Without a reason: the error summary, and nothing merged.
  await page.getByRole('button', { name: 'Merge: these are one person' }).click();
  await assertText(page, '.nhsuk-error-summary', 'Enter the reason');
  await check(page, 'merge-confirm-error');
  await page.fill('#reason', 'PDS shows the first number superseded by the second.');
  await page.getByRole('button', { name: 'Merge: these are one person' }).click();
  await assertText(page, '#merge-recorded', 'recorded');
  const listed = await bodyText(page);
  assert.ok(listed.includes('PDS shows the first number superseded'), 'the reason is listed');
  await check(page, 'merges-after-merge');

  // The retired number's record says where the person is now, and nothing else.
  await page.goto(`/app/patient/${retiredNhs}`);
  await assertText(page, 'h1', 'was merged');
  await assertText(page, '#merged-sentence', spaced(keptNhs));
  await check(page, 'merged-record');

  await page.goto('/app/matching/merges');
  await page.locator('a[id^="unmerge-"]').first().click();
  await assertText(page, 'h1', 'Check before you undo merge');
  await check(page, 'unmerge-confirm');
  await page.fill('#reason', 'Two people: the GP practice confirmed different dates of birth.');
  await page.getByRole('button', { name: 'Undo the merge' }).click();
  await assertText(page, '#unmerge-recorded', 'undone');
  assert.ok((await bodyText(page)).includes('Undone'), 'the merge shows as undone');
  await check(page, 'merges-after-unmerge');
  await ctx.close();
});

// A pair with a local identity (an index person made from a record with no NHS number): the
// demo's hospital holds twins the GP does not; one became a local identity and the other waits
// beside it. Records staff link the pair, open the local identity's page, and unlink the record
// again; the local identity is labelled as one, never as an NHS number.
test('a pair with a local identity: link it, then unlink it from the local identity page', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Grace Obi');
  await page.goto('/app/matching');
  const card = page.locator('section.nhsuk-card', { hasText: 'Local identity: no NHS number' }).first();
  const heading = await card.locator('h3').innerText();
  const label = (heading.match(/local identity (L\d{9})/) || [])[1];
  assert.ok(label, `the card names the local identity: ${heading}`);
  assert.ok(!heading.includes('NHS number'), `never as an NHS number: ${heading}`);
  const waiting = Number(((await bodyText(page)).match(/Records that may be a local identity \((\d+)\)/) || [])[1]);
  assert.ok(waiting >= 1, `local pairs waiting: ${waiting}`);

  await card.getByRole('button', { name: `Link to local identity ${label}: the same person` }).click();
  await assertText(page, '#decision-recorded', 'Decision recorded');
  const after = Number(((await bodyText(page)).match(/Records that may be a local identity \((\d+)\)/) || [])[1]);
  assert.equal(after, waiting - 1, 'one local pair fewer');
  await check(page, 'matching-local-linked');

  await page.goto(`/app/matching/local/${label}`);
  await assertText(page, 'h1', `Local identity ${label}`);
  await assertText(page, '#linked-records', 'Records linked to it (2)');
  const text = await bodyText(page);
  assert.ok(text.includes('Made from this record') && text.includes('Cannot be unlinked'), 'the record it was made from stays');
  await check(page, 'local-identity');

  await page.getByRole('button', { name: /^Unlink: not this person/ }).click();
  await assertText(page, '#decision-recorded', 'Record unlinked');
  await assertText(page, '#linked-records', 'Records linked to it (1)');
  await check(page, 'local-identity-unlinked');
  await ctx.close();
});
