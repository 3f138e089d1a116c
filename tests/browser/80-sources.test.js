// A member of staff reads the sources page: what each source's CapabilityStatement says, how
// each is searched for a patient's items and which items it cannot find; axe checks it.
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, assertText, bodyText, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the sources page says how each source is searched', async () => {
  const { ctx, page } = await context(browser);
  await signIn(page, 'Asha Patel');
  await page.goto('/app/sources');
  await assertText(page, 'h1', 'Source systems');
  const text = await bodyText(page);
  for (const s of demo.sources) {
    assert.ok(text.includes(s.name), `the page should name ${s.name}`);
  }
  // Every source has a row saying how it is searched; the demo's simulated R4 sources find
  // every form of patient reference, so none has items it cannot find.
  const searched = await page.locator('dt', { hasText: 'How it is searched' }).count();
  assert.equal(searched, await page.locator('section.app-source').count(), 'one row per source');
  assert.ok(text.includes('Nothing: its search finds every form of patient reference'), text);
  await check(page, 'staff-sources');
  await ctx.close();
});
