// Plays the user's browser linking a Ring account: opens START_URL (the Ring
// simulator's link page, which delivers a code and redirects to the gateway's
// Account Link URL), signs in on the gateway's sign-in page with TOKEN when it
// asks, and reports where it ended; then opens the dashboard, notes the Ring
// accounts it lists and presses the first one's unlink button. Prints one JSON line.
// Usage: node tests/js/ring_link.mjs START_URL TOKEN [timeout-seconds]
import { launchChromium } from "./browser.mjs";

const [start, token, timeoutSeconds = "60"] = process.argv.slice(2);
if (!start || !token) {
  console.error("usage: ring_link.mjs START_URL TOKEN [timeout]");
  process.exit(2);
}

const browser = await launchChromium();
const result = { start, signInShown: false, pageErrors: [] };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(Number(timeoutSeconds) * 1000);
  page.on("pageerror", (err) => result.pageErrors.push(String(err)));
  await page.goto(start);
  if (new URL(page.url()).pathname === "/ring/sign-in") {
    result.signInShown = true;
    await page.fill("input[name=token]", token);
    await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  }
  result.url = page.url();
  result.title = await page.title();
  result.text = await page.innerText("body");

  await page.goto(new URL("/", result.url).href);
  const accounts = () => page.$$eval(".ring-account", (items) => items.map((item) => ({ id: item.dataset.id, state: item.dataset.state })));
  result.dashboardAccounts = await accounts();
  if (result.dashboardAccounts.length > 0) {
    await Promise.all([page.waitForNavigation(), page.click(".ring-account button[type=submit]")]);
    result.dashboardAccountsAfterUnlink = await accounts();
  }
} catch (error) {
  result.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
