// Drives demo pages in headless Chromium for tests/web/test_web_page.py.
//
//   node drive.mjs JOBS.json > RESULTS.json
//
// JOBS.json: {"executable": "/usr/bin/chromium", "profile": DIR, "timeout_ms": N,
//   "jobs": [{"url": ..., "encode": [texts]?, "screenshot": PATH?}, ...]}
// One browser for all jobs (its start is most of a small page's time); one tab per job. Each
// result: the #output element's text and data-* attributes, the page's console errors, and the
// ids window.llm2tflite.encode gives for the "encode" texts.
import { readFileSync } from "node:fs";
import puppeteer from "puppeteer-core";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const browser = await puppeteer.launch({
  executablePath: spec.executable,
  headless: true,
  userDataDir: spec.profile,
  // As root Chromium needs --no-sandbox; the rest keeps it off the network and quiet.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const results = [];
try {
  for (const job of spec.jobs) {
    const page = await browser.newPage();
    const console_errors = [];
    page.on("console", (message) => {
      if (message.type() === "error") console_errors.push(message.text());
    });
    page.on("pageerror", (error) => console_errors.push(String(error)));
    const started = Date.now();
    await page.goto(job.url, { waitUntil: "load" });
    await page.waitForFunction(
      () => {
        const output = document.getElementById("output");
        return output && (output.dataset.done === "true" || output.dataset.error);
      },
      { timeout: spec.timeout_ms },
    );
    const result = await page.evaluate(() => {
      const output = document.getElementById("output");
      return {
        text: output.textContent,
        done: output.dataset.done ?? null,
        error: output.dataset.error ?? null,
        note: output.dataset.note ?? null,
        stats: output.dataset.stats ? JSON.parse(output.dataset.stats) : null,
        isolated: self.crossOriginIsolated,
      };
    });
    result.wall_ms = Date.now() - started;
    if (job.encode) {
      result.ids = await page.evaluate(
        (texts) => texts.map((text) => window.llm2tflite.encode(text)),
        job.encode,
      );
    }
    if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
    result.console_errors = console_errors;
    results.push(result);
    await page.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
