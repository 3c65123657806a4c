// Opens one page in headless Chromium for tests/browser_client.rs and keeps it open until
// the test closes this process's standard input. Prints "ready" once the page has loaded;
// the page's console and errors go to stderr (the test shows them when it fails).
//
//   node tests/browser/drive.js URL [CHROMIUM-FLAG...]
//
// The flags are added to Chromium's command line (the wss:// test names the certificate
// Chromium is to accept with --ignore-certificate-errors-spki-list).
//
// Env: WSPUSH_CHROMIUM  the browser to drive (default /usr/bin/chromium, Debian's package);
//      playwright-core downloads no browser of its own.
"use strict";

const { chromium } = require("playwright-core");

const url = process.argv[2];
const extraArgs = process.argv.slice(3);
const executablePath = process.env.WSPUSH_CHROMIUM || "/usr/bin/chromium";
// However the test ends, this process does not outlive it by more than this.
const LIMIT_MS = 180000;

async function main() {
  if (!url) throw new Error("usage: node drive.js URL [CHROMIUM-FLAG...]");
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 60000,
    // A hidden page must not have its timers throttled: the client reconnects on a timer.
    args: [
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-dev-shm-usage",
      ...extraArgs,
    ],
  });
  let closed = false;
  const close = async (code) => {
    if (closed) return;
    closed = true;
    await browser.close().catch(() => {});
    process.exit(code);
  };
  const limit = setTimeout(() => {
    console.error(`drive.js: still running after ${LIMIT_MS} ms, closing the browser`);
    close(3);
  }, LIMIT_MS);
  process.stdin.on("end", () => { clearTimeout(limit); close(0); });
  process.stdin.resume();

  const page = await browser.newPage();
  page.on("console", (message) => console.error(`page console.${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console.error(`page error: ${error.stack || error}`));
  page.on("crash", () => { console.error("drive.js: the page crashed"); close(4); });
  await page.goto(url, { timeout: 60000, waitUntil: "load" });
  console.log("ready");
}

main().catch((error) => {
  console.error(`drive.js: ${error.stack || error}`);
  process.exit(1);
});
