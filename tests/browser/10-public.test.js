// The public site: every page a member of the public reads, checked with axe-core.
'use strict';
const { test, before, after } = require('node:test');
const { launch, context, check, assertText } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('the public pages read well and pass axe', async () => {
  const { ctx, page } = await context(browser);
  for (const [path, name, heading] of [
    ['/', 'public-home', 'My Care Record'],
    ['/how-it-works', 'public-how-it-works', 'How'],
    ['/questions', 'public-questions', 'Questions'],
    ['/privacy', 'public-privacy', 'Privacy'],
  ]) {
    await page.goto(path);
    await assertText(page, 'h1', heading);
    await check(page, name);
  }
  await ctx.close();
});
