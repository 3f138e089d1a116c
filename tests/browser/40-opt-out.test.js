// A member of the public asks to opt out; a privacy officer matches the request against the
// index and sends a letter with a code to the registered address; the person enters the code;
// the objection is in the register and a clinician is refused the record.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, assertText, bodyText, findByNhs, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const patient = demo.patients.gp_only[1];

test('opt-out request, verified, becomes an objection, and the record is refused', async () => {
  // The privacy officer's view of the person, to fill the form as they would.
  const po = await context(browser);
  await signIn(po.page, 'Helen Wright');
  await findByNhs(po.page, patient);
  const cells = await po.page.locator('table tbody tr').first().locator('td').allInnerTexts();
  const [family, given] = cells[0].split(',').map((s) => s.trim());
  const born = new Date(`${cells[2]} 12:00 UTC`);
  const postcode = cells[4];
  assert.ok(!Number.isNaN(born.getTime()), `date of birth "${cells[2]}" should read as a date`);

  const pub = await context(browser);
  await pub.page.goto('/');
  await pub.page.getByRole('link', { name: 'Opt out' }).first().click();
  await assertText(pub.page, 'h1', 'Ask to opt out');
  await check(pub.page, 'public-opt-out-form');
  // Nothing filled in but a bad NHS number: every problem named, what was typed kept.
  await pub.page.fill('#nhs', '123');
  await pub.page.getByRole('button', { name: 'Send opt-out request' }).click();
  await assertText(pub.page, '.nhsuk-error-summary', 'Enter your first name');
  assert.equal(await pub.page.inputValue('#nhs'), '123');
  await check(pub.page, 'public-opt-out-errors');

  await pub.page.fill('#given', given.split(' ')[0]);
  await pub.page.fill('#family', family);
  await pub.page.fill('#dob-day', String(born.getUTCDate()));
  await pub.page.fill('#dob-month', String(born.getUTCMonth() + 1));
  await pub.page.fill('#dob-year', String(born.getUTCFullYear()));
  await pub.page.fill('#nhs', '');
  await pub.page.fill('#postcode', postcode.toLowerCase());
  await pub.page.fill('#contact', 'person@example.org');
  await pub.page.getByRole('button', { name: 'Send opt-out request' }).click();
  await assertText(pub.page, 'h1', 'Opt-out request sent');
  const reference = (await pub.page.locator('#reference').innerText()).trim();
  assert.match(reference, /^OPT-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
  await check(pub.page, 'public-opt-out-confirmation');
  await pub.ctx.close();

  await po.page.getByRole('link', { name: 'Opt-out requests' }).click();
  await assertText(po.page, 'h1', 'Opt-out requests');
  await check(po.page, 'privacy-opt-out-queue');
  await po.page.getByRole('link', { name: reference }).click();
  await assertText(po.page, 'h1', reference);
  assert.ok((await bodyText(po.page)).includes('Family name, date of birth and postcode match'));
  await check(po.page, 'privacy-opt-out-request');
  // Matching details is not proof of identity: a letter with a code goes to the registered
  // address, and the opt-out starts when the code comes back.
  await po.page.getByRole('button', { name: "Send a verification letter to this patient's address" }).click();
  assert.ok((await bodyText(po.page)).includes('Awaiting the letter code'), 'the case says it awaits the letter code');
  const code = (await po.page.locator('#letter-code').innerText()).trim();
  assert.match(code, /^[A-Z2-9]{4}-[A-Z2-9]{4}$/);
  await check(po.page, 'privacy-opt-out-letter-sent');

  const person = await context(browser);
  await person.page.goto('/opt-out/code');
  await assertText(person.page, 'h1', 'Enter the code from your letter');
  await check(person.page, 'public-opt-out-code');
  await person.page.fill('#reference', reference);
  await person.page.fill('#code', code);
  await person.page.getByRole('button', { name: 'Confirm my request' }).click();
  await assertText(person.page, 'h1', 'Your opt-out has started');
  await check(person.page, 'public-opt-out-started');
  await person.ctx.close();

  await po.page.goto(`/app/opt-outs/${reference}`);
  await assertText(po.page, 'h1', 'Verified');
  await check(po.page, 'privacy-opt-out-verified');
  await po.ctx.close();

  const gp = await context(browser);
  await signIn(gp.page, 'Chidi Okafor');
  await gp.page.goto(`/app/patient/${patient}`);
  await assertText(gp.page, 'h1', 'You cannot view this record');
  assert.ok((await bodyText(gp.page)).toLowerCase().includes('opted out'), 'the refusal should say the patient opted out');
  await check(gp.page, 'clinician-record-refused-opted-out');
  await gp.ctx.close();
});
