// One source stops answering: the record still opens, and the banner names the missing source
// so missing data never looks like no data. Last, because a source told to drop connections
// drops its control requests too.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, assertText, bodyText, setBehaviour, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const patient = demo.patients.all_four_sources[0];

test('the record with one source down names it in the banner', async () => {
  await setBehaviour('community', { latency_ms: [0, 0], failure: 'drop' });
  const { ctx, page } = await context(browser);
  await signIn(page, 'Asha Patel');
  await page.goto(`/app/patient/${patient}`);
  if ((await page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await page.getByRole('button', { name: 'The patient has given permission' }).click();
  }
  await page.waitForSelector('#sources-heading');
  await assertText(page, '#sources-heading', 'Some information is missing');
  const community = demo.sources.find((s) => s.id === 'community').name;
  const banner = await page.locator('.app-source-banner').innerText();
  assert.ok(banner.includes(community), `the banner should name ${community}: ${banner}`);
  assert.ok((await bodyText(page)).includes('does not mean the person does not have it'));
  await check(page, 'clinician-record-source-down');
  await ctx.close();
});
