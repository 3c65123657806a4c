// Uses the demo page (GET / of a wspush server) in headless Chromium for
// tests/browser_client.rs, as a person would: connect, push with the page's own button, wait
// for the message, disconnect. Prints the page's log as one JSON array of lines and exits 0;
// exits 1 naming the step that did not happen.
//
//   node tests/browser/demo.js API_URL
"use strict";

const { chromium } = require("playwright-core");

const url = process.argv[2];
const executablePath = process.env.WSPUSH_CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 30000;

async function main() {
  if (!url) throw new Error("usage: node demo.js API_URL");
  const browser = await chromium.launch({ executablePath, headless: true, timeout: 60000, args: ["--disable-dev-shm-usage"] });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (error) => console.error(`page error: ${error.stack || error}`));
    await page.goto(url, { timeout: 60000, waitUntil: "load" });
    const step = async (what, condition) => {
      try {
        await page.waitForFunction(condition, null, { timeout: STEP_MS });
      } catch (error) {
        const log = await page.evaluate(() => document.getElementById("log").textContent);
        throw new Error(`${what} did not happen within ${STEP_MS} ms; the page's log: ${log}`);
      }
    };
    await page.click("#connect");
    await step("the open state", () => document.getElementById("state").textContent === "open");
    await page.click("#send");
    await step("the pushed message", () => document.getElementById("log").textContent.includes("order 456 shipped"));
    await page.click("#disconnect");
    await step("the stopped state", () => document.getElementById("state").textContent === "stopped");
    const lines = await page.evaluate(() =>
      [...document.querySelectorAll("#log li")].map((li) => li.lastChild.textContent));
    console.log(JSON.stringify(lines));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(`demo.js: ${error.stack || error}`);
  process.exit(1);
});
