// A record a clinician can scan: at 1280x800 the summary (alerts, legal and end-of-life,
// allergies, current medications, active problems, last encounters) is within the first
// screen; the sections are dense tables, newest first, each row with its date and source;
// "Show older" and the date filter work with links and a form alone (no JavaScript needed).
'use strict';
const { test, before, after } = require('node:test');
const { assert, launch, context, check, signIn, demo } = require('./lib');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const FIRST_SCREEN = { width: 1280, height: 800 };
const large = demo.patients.large_record[0];
const legal = (demo.patients.legal_end_of_life || [])[0];

async function openRecord(page, nhs, query = '') {
  await page.goto(`/app/patient/${nhs}${query}`);
  if ((await page.locator('h1').first().innerText()).includes('Are you caring for this person?')) {
    await page.getByRole('link', { name: 'I am caring for this patient' }).click();
    await page.fill('#reason', 'Seeing the patient in clinic today.');
    await page.getByRole('button', { name: 'Record that I am caring for this patient' }).click();
  }
  if ((await page.locator('h1').first().innerText()).includes("Ask the patient's permission")) {
    await page.getByRole('button', { name: 'The patient has given permission' }).click();
    if (query) await page.goto(`/app/patient/${nhs}${query}`);
  }
  await page.waitForSelector('#summary');
}

// Every box of the summary lies wholly within the first screen, with the page scrolled to the top.
async function assertSummaryInFirstScreen(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  const boxes = await page.locator('#summary .app-summary__box').evaluateAll((els) =>
    els.map((e) => { const r = e.getBoundingClientRect(); return { id: e.id, top: r.top, bottom: r.bottom }; }));
  assert.deepEqual(boxes.map((b) => b.id), ['summary-alerts', 'summary-legal', 'summary-allergies',
    'summary-medications', 'summary-problems', 'summary-encounters'], `${name}: the summary's boxes, in order`);
  for (const b of boxes) {
    assert.ok(b.top >= 0 && b.bottom <= FIRST_SCREEN.height,
      `${name}: ${b.id} is not within the first screen at 1280x800 (top ${b.top}, bottom ${b.bottom})`);
  }
}

test('a large record: the summary in the first screen, sections as tables, show older', async () => {
  const { ctx, page } = await context(browser);
  await page.setViewportSize(FIRST_SCREEN);
  await signIn(page, 'Asha Patel');
  await openRecord(page, large);
  await check(page, 'record-page-large');
  await page.screenshot({ path: require('node:path').resolve(__dirname, '../../target/screenshots/record-page-first-screen.png') });
  await assertSummaryInFirstScreen(page, 'large record');

  // Every listed item shows its date and its source.
  const tables = page.locator('section table.app-dense-table');
  assert.ok(await tables.count() > 3, 'the sections are tables');
  const heads = await tables.first().locator('thead th').allInnerTexts();
  assert.deepEqual(heads, ['Date', 'Item', 'Detail', 'Status', 'Source']);
  const rows = await page.locator('section:not(#results) table.app-dense-table tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [tr.cells[0].innerText.trim(), tr.cells[4].innerText.trim()]));
  assert.ok(rows.length > 10, `rows listed: ${rows.length}`);
  for (const [date, source] of rows) {
    assert.ok(date.length > 0, 'a row without its date');
    assert.ok(source.length > 0, 'a row without its source');
  }

  // "Show older" is a link: following it lists that section whole.
  const older = page.locator('a', { hasText: /^Show \d+ older/ }).first();
  assert.ok(await older.count() === 1, 'a large record has a section with older items');
  const href = await older.getAttribute('href');
  const section = href.split('#')[1];
  const before = await page.locator(`#${section} tbody tr`).count();
  await older.click();
  await page.waitForURL(/older=/);
  const afterRows = await page.locator(`#${section} tbody tr`).count();
  assert.ok(afterRows > before, `${section}: ${afterRows} rows after "Show older", ${before} before`);
  await check(page, 'record-page-older');
  await ctx.close();
});

test('the date filter is a form: it hides older items, says so, and refuses a date it cannot read', async () => {
  const { ctx, page } = await context(browser);
  await page.setViewportSize(FIRST_SCREEN);
  await signIn(page, 'Asha Patel');
  await openRecord(page, large);
  const all = await page.locator('section table.app-dense-table tbody tr').count();
  const year = new Date().getUTCFullYear();
  await page.fill('#from', `${year}-01-01`);
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/from=/);
  const filtered = await page.locator('section table.app-dense-table tbody tr').count();
  assert.ok(filtered < all, `from ${year}-01-01: ${filtered} rows, ${all} before`);
  const text = await page.locator('main').innerText();
  assert.ok(/earlier (items are|item is|results are|result is) not listed/.test(text), 'what the filter hides is said');
  assert.equal(await page.inputValue('#from'), `${year}-01-01`);
  await assertSummaryInFirstScreen(page, 'filtered record');
  await check(page, 'record-page-filtered');

  await page.fill('#from', '31/12/2024');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForSelector('#from-error');
  assert.ok((await page.locator('#from-error').innerText()).includes('year, month and day'));
  await check(page, 'record-page-filter-error');
  await ctx.close();
});

test('legal and end-of-life decisions are in the summary, in the first screen', async () => {
  assert.ok(legal, 'the demo names a patient with legal and end-of-life decisions');
  const { ctx, page } = await context(browser);
  await page.setViewportSize(FIRST_SCREEN);
  await signIn(page, 'Asha Patel');
  await openRecord(page, legal);
  await check(page, 'record-page-legal');
  await assertSummaryInFirstScreen(page, 'legal');
  const box = await page.locator('#summary-legal').innerText();
  assert.ok(/resuscitation|attorney|advance decision/i.test(box), `the legal box shows the decision: ${box}`);
  await ctx.close();
});
