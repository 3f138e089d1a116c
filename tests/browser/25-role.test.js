// A member of staff with two NHS CIS2 role profiles chooses the one they are working in after
// signing in, as CIS2 asks, and changes it later from the header; axe checks every page.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, assertText } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a user with two role profiles chooses one, then changes it', async () => {
  const { ctx, page } = await context(browser);
  await page.goto('/signin');
  await page.click('#signin');
  await page.getByRole('button', { name: /Alex Reid/ }).click();
  await page.waitForURL(/\/signin\/role/);
  await assertText(page, 'h1', 'Choose the role you are working in');
  assert.equal(await page.locator('input[name="profile"]').count(), 2, 'both profiles offered');
  await check(page, 'role-choice');

  // Continue without choosing: the error summary.
  await page.getByRole('button', { name: 'Continue' }).click();
  await assertText(page, '.nhsuk-error-summary', 'Select the role you are working in');
  await check(page, 'role-choice-error');

  // The second profile: A&E doctor at the acute trust.
  await page.locator('input[name="profile"]').nth(1).check();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(/\/app$/);
  await assertText(page, 'h1', 'Find a patient');
  const bar = await page.locator('.nhsuk-header__account').innerText();
  assert.ok(bar.includes('Dr Alex Reid, Doctor'), bar);
  await check(page, 'role-chosen');

  // Change role from the header: the page marks the role in use.
  await page.getByRole('link', { name: 'Change role' }).click();
  await page.waitForURL(/\/signin\/role/);
  assert.ok(await page.locator('input[name="profile"]').nth(1).isChecked(), 'the role in use is selected');
  await page.locator('input[name="profile"]').nth(0).check();
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(/\/app$/);
  await assertText(page, 'h1', 'Find a patient');
  await ctx.close();
});
