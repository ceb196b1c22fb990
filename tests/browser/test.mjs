// The browser test of the demo page: plain Node, no test framework.
//
// It starts the real server (target/debug/realtime-by-hand) on a free port,
// drives Debian's Chromium through playwright-core, and checks what a person
// would see: badges, messages in both panels, the inspector's decoded
// frames, SSE resuming across stream ends, and both panels coming back
// after the server restarts. Then pages the server did not serve: the
// article's page opened from a file (Origin: null) must work, a page on
// another site must be refused, and so must a DNS-rebinding name. Run it
// through run.sh, which installs Chromium, playwright-core and builds the
// server first.
//
// Everything is bounded: each wait has its own timeout, and the whole run
// has OVERALL_MS. The server(s) and the browser are killed on every exit.
//
// With --cluster (after the rest) or --cluster-only, it also runs the page
// through nginx in front of three instances sharing one Redis (lesson 19):
// it needs redis-server and nginx (tests/cluster/run.sh installs them and
// runs this), found on PATH or in $REDIS_SERVER and $NGINX.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createTcpServer } from "node:net";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

import { decodeWsFrame, decodeSse, hexToBytes } from "../../public/decode.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, "target");
const BIN = path.join(TARGET, "debug", "realtime-by-hand");
const SCREENSHOTS = path.join(HERE, "screenshots");
// axe-core's browser build, from the npm package (package.json pins it).
const AXE = path.join(HERE, "node_modules", "axe-core", "axe.min.js");

const CLUSTER = process.argv.includes("--cluster") || process.argv.includes("--cluster-only");
const CLUSTER_ONLY = process.argv.includes("--cluster-only");
const REDIS_SERVER = process.env.REDIS_SERVER || "redis-server";
const NGINX = process.env.NGINX || "nginx";
const OVERALL_MS = CLUSTER_ONLY ? 90_000 : CLUSTER ? 210_000 : 120_000;
const WAIT_MS = 10_000; // default for one wait
// Short streams, so the resume part sees several ends; a short retry: so
// the browser comes back within a second.
const SERVER_ARGS = ["--max-stream-secs", "2", "--retry-ms", "1000"];
// Two made-up names that resolve to 127.0.0.1, as a rebinding attacker's
// name would: a page on another site, and a name re-pointed at the server.
const FOREIGN_NAME = "elsewhere.test";
const REBOUND_NAME = "rebound.test";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
  `--host-resolver-rules=MAP ${FOREIGN_NAME} 127.0.0.1, MAP ${REBOUND_NAME} 127.0.0.1`,
];

const started = Date.now();
const passed = [];
const servers = new Set();
let context = null;
let page = null;
let userDataDir = null;
let serverLog = [];
let foreignSite = null;
let clusterDir = null;
// Processes that must end with SIGTERM (nginx: its master stops its
// workers; SIGKILL would leave them running).
const gentle = new Set();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

function ok(what) {
  passed.push(what);
  console.log(`  ok  ${what}  [${elapsed()}]`);
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  ok(what);
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/** Starts the server; resolves with { proc, url, port } once it printed its URL. */
function startServer(port = 0, extra = SERVER_ARGS) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ["--port", String(port), ...extra], { stdio: ["ignore", "pipe", "pipe"] });
    servers.add(proc);
    let settled = false;
    const timer = setTimeout(() => fail(new Error("the server did not print its URL within 10 s")), 10_000);
    function fail(error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      proc.kill("SIGKILL");
      reject(error);
    }
    // Read every line, always: a full pipe would block the server's logging.
    createInterface({ input: proc.stdout }).on("line", (line) => {
      serverLog.push(`[${proc.pid}] ${line}`);
      if (serverLog.length > 300) serverLog.shift();
      const match = !settled && line.match(/http:\/\/127\.0\.0\.1:(\d+)/);
      if (match) {
        settled = true;
        clearTimeout(timer);
        resolve({ proc, url: `http://127.0.0.1:${match[1]}`, port: Number(match[1]) });
      }
    });
    createInterface({ input: proc.stderr }).on("line", (line) => serverLog.push(`[${proc.pid} stderr] ${line}`));
    proc.on("exit", (code, signal) => {
      servers.delete(proc);
      fail(new Error(`the server exited before it was ready (code ${code}, signal ${signal})`));
    });
    proc.on("error", fail);
  });
}

async function stopServer(server) {
  if (server.proc.exitCode !== null || server.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => server.proc.once("exit", resolve));
  server.proc.kill("SIGKILL");
  await exited;
}

async function post(url, message) {
  const response = await fetch(`${url}/trigger-event`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ message }),
    signal: AbortSignal.timeout(5000),
  });
  if (!response.ok) throw new Error(`POST /trigger-event answered ${response.status}`);
  return response.json();
}

async function stats(url) {
  const response = await fetch(`${url}/stats`, { signal: AbortSignal.timeout(5000) });
  return response.json();
}

// ---------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------

/** Waits until an element's data-state is `state`. */
async function waitState(selector, state, timeout = WAIT_MS) {
  await page.waitForFunction(
    ([sel, st]) => document.querySelector(sel)?.dataset.state === st,
    [selector, state],
    { timeout, polling: 50 },
  );
}

/** Waits until a message list has an item of this type with exactly this text. */
async function waitMessage(list, type, text, timeout = WAIT_MS) {
  await page.waitForFunction(
    ([l, ty, tx]) => [...document.querySelectorAll(`${l} li`)].some((li) => li.dataset.type === ty && li.dataset.text === tx),
    [list, type, text],
    { timeout, polling: 50 },
  );
}

/** The ids of the notification items in the SSE list. */
function sseNotificationIds() {
  return page.$$eval("#sse-messages li[data-type='notification']", (items) => items.map((li) => Number(li.dataset.id)));
}

const badgeLog = (which) => page.evaluate((w) => window.__badgeLog.filter((e) => e.badge === w), which);

// Installed before the page's own scripts: records every change of the
// badges, so the test can check states that last only a moment.
function recordBadges() {
  window.__badgeLog = [];
  document.addEventListener("DOMContentLoaded", () => {
    for (const id of ["sse-badge", "ws-badge", "inspector-badge"]) {
      const badge = document.getElementById(id);
      new MutationObserver(() => {
        const last = window.__badgeLog.filter((e) => e.badge === id).at(-1);
        if (!last || last.state !== badge.dataset.state || last.text !== badge.textContent) {
          window.__badgeLog.push({ badge: id, state: badge.dataset.state, text: badge.textContent, at: Date.now() });
        }
      }).observe(badge, { attributes: true, childList: true, characterData: true, subtree: true });
    }
  });
}

/**
 * Runs axe-core inside the page and checks that it reports no violations.
 * On failure every violation is printed with its rule id, its help text and
 * the elements it found, so the message says what to fix and where.
 */
async function checkAccessibility(layout) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    await page.addScriptTag({ path: AXE });
  }
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document);
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(" ")),
    }));
  });
  for (const v of violations) {
    console.log(`  axe (${layout}): ${v.id} [${v.impact}] ${v.help}`);
    for (const target of v.targets) console.log(`      ${target}`);
  }
  check(violations.length === 0, `axe-core finds no accessibility violations at ${layout}` +
    (violations.length ? ` (it found ${violations.map((v) => v.id).join(", ")})` : ""));
}

/** Waits until a form's status line says `text` in the colour of `state`. */
async function waitStatusLine(selector, state, text) {
  await page.waitForFunction(([sel, st, tx]) => {
    const line = document.querySelector(sel);
    return line.textContent === tx && line.classList.contains(st);
  }, [selector, state, text], { timeout: WAIT_MS, polling: 50 });
}

// The status lines under both forms when a send cannot go out (run while
// both panels are disconnected).
async function statusLineChecks() {
  await page.fill("#trigger-message", "  ");
  await page.click("#trigger-form button[type='submit']");
  await waitStatusLine("#trigger-status", "error", "type a message first");
  check(await page.evaluate(() => document.activeElement.id === "trigger-message"),
    "an empty event is not sent: the status line asks for a message and the box has the focus");
  await page.fill("#chat-message", "");
  await page.click("#chat-form button[type='submit']");
  await waitStatusLine("#chat-status", "error", "type a message first");
  await page.fill("#chat-message", "while disconnected");
  await page.click("#chat-form button[type='submit']");
  await waitStatusLine("#chat-status", "error", "not connected: press Connect first");
  ok("a chat is not sent when empty, nor while disconnected: the status line says why");
  await page.fill("#chat-message", "");
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

function decoderChecks() {
  // RFC 6455 §5.7's own examples.
  const hello = decodeWsFrame(Uint8Array.from([0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]));
  check(hello.fin === 1 && hello.opcodeName === "text" && !hello.masked && hello.text === "Hello",
    "decode.js: RFC 6455 unmasked \"Hello\" frame");
  const masked = decodeWsFrame(Uint8Array.from([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]));
  check(masked.masked === 1 && masked.text === "Hello" && masked.headerLength === 6,
    "decode.js: RFC 6455 masked \"Hello\" frame unmasks by XOR with the key");
  const medium = decodeWsFrame(Uint8Array.from([0x82, 0x7e, 0x01, 0x00, 1, 2, 3]));
  check(medium.lengthForm === "16-bit" && medium.payloadLength === 256 && medium.frameLength === 260,
    "decode.js: 16-bit length form (256-byte binary frame)");
  const big = decodeWsFrame(Uint8Array.from([0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]));
  check(big.lengthForm === "64-bit" && big.payloadLength === 65536, "decode.js: 64-bit length form (64 KiB frame)");
  const close = decodeWsFrame(hexToBytes("880203e8"));
  check(close.opcodeName === "close" && close.text === "close code 1000", "decode.js: close frame with code 1000");
  const event = decodeSse(new TextEncoder().encode("id: 7\nevent: alert\ndata: a\ndata: b\n\n"), 33);
  check(event.parts.map((p) => p.label).join(",") === "id:,event:,data:,data:,blank line" && event.dataText === "a\nb",
    "decode.js: SSE event split into id:, event:, data: lines and the blank line");
}

async function launchBrowser() {
  const executablePath = execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim();
  userDataDir = mkdtempSync(path.join(tmpdir(), "realtime-by-hand-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(WAIT_MS);
  page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (error) => console.log(`  page error: ${error.message}`));
  await page.addInitScript(recordBadges);
}

async function main() {
  console.log("decoder (Node, no browser):");
  decoderChecks();
  if (CLUSTER_ONLY) {
    await launchBrowser();
    await clusterChecks();
    return;
  }
  await singleServerChecks();
  if (CLUSTER) await clusterChecks();
}

async function singleServerChecks() {
  console.log("page:");
  let server = await startServer();
  console.log(`  server at ${server.url} (pid ${server.proc.pid})`);

  await launchBrowser();
  await page.goto(`${server.url}/`);

  // 1. Everything connects by itself.
  await waitState("#inspector-badge", "connected");
  await waitState("#sse-badge", "connected");
  await waitState("#ws-badge", "connected");
  ok("inspector, SSE and WebSocket badges say connected");
  await checkAccessibility("1280 px");

  const tag = Math.random().toString(36).slice(2, 8);

  // 2. Trigger an event from the page, with the keyboard (Enter submits).
  const note = `triggered ${tag}`;
  await page.focus("#trigger-message");
  await page.keyboard.type(note);
  await page.keyboard.press("Enter");
  await waitMessage("#sse-messages", "notification", note);
  await waitMessage("#ws-messages", "notification", note);
  ok("a triggered event (typed, Enter) appears in the SSE panel and the WebSocket panel");
  await page.waitForFunction(() => /^200: Event sent/.test(document.querySelector("#trigger-status").textContent) &&
    document.querySelector("#trigger-status").classList.contains("ok"));
  ok("the server's answer to POST /trigger-event is shown");

  // 3. Chat over WebSocket: it reaches both panels.
  const chat = `hello ${tag}`;
  await page.fill("#chat-username", "tester");
  await page.focus("#chat-message");
  await page.keyboard.type(chat);
  await page.keyboard.press("Enter");
  await waitMessage("#ws-messages", "chat", `tester: ${chat}`);
  await waitMessage("#sse-messages", "chat", `tester: ${chat}`);
  ok("a chat message sent over WebSocket appears in both panels");

  // The article's page connected to the server's root URL: a plain
  // `new WebSocket('ws://host:port')` from the page's own script must chat too.
  const rootChat = await page.evaluate(() => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}`);
    const timer = setTimeout(() => reject(new Error("no answer on ws://host/")), 10000);
    ws.onmessage = (e) => {
      const data = JSON.parse(e.data);
      if (data.type === "welcome") ws.send(JSON.stringify({ type: "chat", message: "from the root URL", username: "root" }));
      if (data.type === "chat" && data.message === "from the root URL") {
        clearTimeout(timer);
        ws.close(1000);
        resolve(data);
      }
    };
  }));
  check(rootChat.username === "root" && typeof rootChat.clientId === "number",
    "new WebSocket('ws://host:port') (the root URL, as in the article) chats");
  await waitMessage("#sse-messages", "chat", "root: from the root URL");
  ok("that chat from the root URL appears in the SSE panel too");

  // 4. The inspector: a masked client frame, decoded; an SSE event's id: line.
  const ownWs = await page.evaluate(() => document.querySelector("#ws-messages li[data-type='welcome']")?.dataset.text);
  await page.waitForFunction((text) => [...document.querySelectorAll("#records li[data-kind='ws'][data-dir='in']")].some((li) =>
    li.querySelector(".part-ws-b1 .part-note")?.textContent.startsWith("MASK=1") &&
    li.querySelector(".part-ws-key") &&
    li.querySelector(".part-ws-masked") &&
    li.querySelector(".part-ws-payload .part-text")?.textContent.includes(text)), chat);
  ok(`inspector: an inbound WebSocket frame with MASK=1, its masking key, and the payload unmasked in JS (${ownWs})`);
  await page.waitForFunction(() => [...document.querySelectorAll("#records li[data-kind='sse']")].some((li) =>
    li.querySelector(".part-id .part-label")?.textContent === "id:" && li.querySelector(".part-data") && li.querySelector(".part-blank")));
  ok("inspector: an SSE event with its labelled id:, data: lines and the blank line");
  await page.waitForFunction(() => !/nothing/.test(document.querySelector("#m-ws-latency").textContent) &&
    !/nothing/.test(document.querySelector("#m-sse-latency").textContent) &&
    /\+2 B/.test(document.querySelector("#m-ws-bytes").textContent) &&
    /\+6 B/.test(document.querySelector("#m-ws-bytes").textContent) &&
    /B on the wire/.test(document.querySelector("#m-sse-bytes").textContent));
  await page.waitForFunction(() => /open SSE streams/.test(document.querySelector("#m-sse-conns").textContent));
  ok("comparison table: measured bytes (+2 B server frame, +6 B masked client frame), both latencies, /stats counts");

  // 5. Disconnect both.
  await page.click("#sse-disconnect");
  await page.click("#ws-disconnect");
  await waitState("#sse-badge", "disconnected");
  await waitState("#ws-badge", "disconnected");
  ok("Disconnect: both badges say disconnected");
  await statusLineChecks();
  let counts = null;
  for (let i = 0; i < 40; i++) {
    counts = await stats(server.url);
    if (counts.sse_connections === 0 && counts.ws_connections === 0) break;
    await sleep(100);
  }
  check(counts.sse_connections === 0 && counts.ws_connections === 0, "GET /stats counts 0 SSE and 0 WebSocket connections after that");

  // 6. Resume: events posted across stream ends arrive once each.
  await page.click("#sse-connect");
  await page.click("#ws-connect");
  await waitState("#sse-badge", "connected");
  await waitState("#ws-badge", "connected");
  ok("Connect: both badges say connected again");
  const resumeStart = Date.now();
  const posted = [];
  let inGap = 0;
  for (let i = 1; i <= 6; i++) {
    if (i % 2 === 0) {
      // Every other event goes out while the stream is down: the browser
      // must fetch it with Last-Event-ID when it reconnects.
      await waitState("#sse-badge", "reconnecting", 5000);
    }
    const state = await page.$eval("#sse-badge", (b) => b.dataset.state);
    const answer = await post(server.url, `resume ${i} ${tag}`);
    posted.push(answer.id);
    if (state === "reconnecting") inGap += 1;
    if (i % 2 === 1) await sleep(1200);
  }
  await page.waitForFunction((ids) => {
    const seen = [...document.querySelectorAll("#sse-messages li[data-type='notification']")].map((li) => Number(li.dataset.id));
    return ids.every((id) => seen.includes(id));
  }, posted, { timeout: 10_000 });
  const ids = await sseNotificationIds();
  const once = posted.every((id) => ids.filter((x) => x === id).length === 1);
  check(once, `resume: all 6 events (ids ${posted.join(", ")}) arrived in the SSE panel exactly once`);
  check(inGap >= 3, `resume: ${inGap} of them were posted while the SSE stream was down (the badge said reconnecting)`);
  const flagged = await page.$$eval("#sse-messages li.msg-flagged", (items) => items.map((li) => li.textContent));
  check(flagged.length === 0, "resume: no event flagged as seen twice or as a gap");
  const sseLog = (await badgeLog("sse-badge")).filter((e) => e.at >= resumeStart);
  const reconnects = sseLog.filter((e) => e.state === "reconnecting").length;
  check(reconnects >= 2, `resume: the SSE badge went to reconnecting ${reconnects} times while the page did nothing`);
  const lastEventIdNotes = await page.$$eval("#sse-messages li.msg-system", (items) =>
    items.filter((li) => /reconnected by the browser, with Last-Event-ID: \d+/.test(li.textContent)).length);
  check(lastEventIdNotes >= 2, `resume: the panel shows the browser reconnecting with Last-Event-ID (${lastEventIdNotes} times)`);

  // 7. Restart the server on the same port: both panels come back.
  const port = server.port;
  const resetsBefore = await page.$$eval("#sse-messages li[data-type='reset']", (items) => items.length);
  const restartAt = Date.now();
  await stopServer(server);
  await page.waitForFunction(() => document.querySelector("#ws-badge").textContent === "reconnecting (attempt 1/5)", null, { timeout: 5000 });
  await waitState("#sse-badge", "reconnecting", 5000);
  ok("server killed: WebSocket badge says reconnecting (attempt 1/5), SSE badge says reconnecting");
  for (let tries = 1; ; tries++) {
    try {
      server = await startServer(port);
      break;
    } catch (error) {
      if (tries >= 10) throw error;
      await sleep(200); // the port may not be free yet
    }
  }
  console.log(`  server restarted at ${server.url} (pid ${server.proc.pid})`);
  await waitState("#ws-badge", "connected", 20_000);
  await waitState("#sse-badge", "connected", 10_000);
  await page.waitForFunction((before) => document.querySelectorAll("#sse-messages li[data-type='reset']").length > before,
    resetsBefore, { timeout: 10_000 });
  ok("server restarted: SSE reconnected by itself and shows a reset (the old history died with the old process)");
  const wsLog = (await badgeLog("ws-badge")).filter((e) => e.at >= restartAt);
  const states = wsLog.map((e) => e.text);
  check(states.includes("reconnecting (attempt 1/5)") && states.at(-1) === "connected",
    `server restarted: WebSocket badge went ${[...new Set(states)].join(" → ")}`);
  const again = `after restart ${tag}`;
  await page.fill("#chat-message", again);
  await page.click("#chat-form button[type='submit']");
  await waitMessage("#ws-messages", "chat", `tester: ${again}`);
  await waitMessage("#sse-messages", "chat", `tester: ${again}`);
  ok("after the restart a chat message again reaches both panels");

  // 8. Screenshots: desktop, then 360 px wide.
  mkdirSync(SCREENSHOTS, { recursive: true });
  await sleep(300);
  await page.screenshot({ path: path.join(SCREENSHOTS, "demo.png"), fullPage: true });
  // Again now that the message lists are long enough to scroll.
  await checkAccessibility("1280 px, lists full");
  await page.setViewportSize({ width: 360, height: 780 });
  await sleep(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: path.join(SCREENSHOTS, "demo-360.png"), fullPage: true });
  check(overflow <= 0, "at 360 px wide nothing sticks out sideways (no horizontal scrolling)");
  await checkAccessibility("360 px");
  ok("screenshots saved: tests/browser/screenshots/demo.png, demo-360.png");

  // 9. --no-inspect: the inspector says it is off.
  const plain = await startServer(0, ["--no-inspect"]);
  const second = await context.newPage();
  await second.goto(`${plain.url}/`);
  await second.waitForFunction(() => document.querySelector("#inspector-badge").dataset.state === "off" &&
    /--no-inspect/.test(document.querySelector("#inspector-summary").textContent));
  await second.waitForFunction(() => document.querySelector("#sse-badge").dataset.state === "connected" &&
    document.querySelector("#ws-badge").dataset.state === "connected");
  ok("with --no-inspect the inspector says it is off, and both panels still connect");
  await second.close();
  await stopServer(plain);

  await pagesFromElsewhere();
}

// ---------------------------------------------------------------------------
// Pages the server did not serve: the Host and Origin policy
// ---------------------------------------------------------------------------

/** The server log's lines since `since` that mention `text`. */
const logLines = (since, text) => serverLog.slice(since).filter((line) => line.includes(text));

async function pagesFromElsewhere() {
  console.log("pages from elsewhere:");
  const server = await startServer(0, []);
  console.log(`  server at ${server.url} (pid ${server.proc.pid})`);

  // 10. The article's page, opened from disk, calls http://localhost:PORT.
  const filePage = await context.newPage();
  // What Chromium really sends, from its DevTools protocol: the preflights,
  // and the Origin header of every request (location.origin says "file://",
  // but the header is "null").
  const preflights = [];
  const origins = new Set();
  const cdp = await context.newCDPSession(filePage);
  await cdp.send("Network.enable");
  cdp.on("Network.requestWillBeSent", (e) => {
    if (e.request.method === "OPTIONS") preflights.push(e.request.url);
  });
  cdp.on("Network.requestWillBeSentExtraInfo", (e) => {
    const name = Object.keys(e.headers).find((n) => n.toLowerCase() === "origin");
    if (name) origins.add(e.headers[name]);
  });
  const fileUrl = pathToFileURL(path.join(HERE, "from-file.html"));
  fileUrl.search = `?server=http://localhost:${server.port}`;
  await filePage.goto(fileUrl.href);
  await filePage.waitForFunction(() => {
    const r = window.results;
    const posted = `posted ${r.tag}`;
    return r.post !== null &&
      r.sse.some((e) => e.type === "notification" && e.message === posted) &&
      r.ws.some((m) => m.type === "notification" && m.message === posted) &&
      r.ws.some((m) => m.type === "chat" && m.message === `chat ${r.tag}`);
  }, null, { timeout: WAIT_MS, polling: 50 }).catch(async (error) => {
    console.log(`  the file page's results: ${JSON.stringify(await filePage.evaluate(() => window.results))}`);
    throw error;
  });
  const results = await filePage.evaluate(() => window.results);
  check(fileUrl.protocol === "file:" && [...origins].join() === "null",
    `a page opened from a file:// URL sends Origin: ${[...origins].join(", ")}`);
  check(results.sse[0]?.type === "welcome" && results.sse.some((e) => e.message === `posted ${results.tag}`),
    "file:// page: EventSource on /events opens and receives the posted event");
  check(results.post.status === 200 && results.post.body.success === true,
    `file:// page: fetch POST of JSON to /trigger-event answers ${results.post.status}`);
  check(preflights.some((url) => url.endsWith("/trigger-event")),
    "file:// page: that POST was preceded by a CORS preflight (OPTIONS), which the server allowed");
  check(results.ws.some((m) => m.type === "chat" && m.message === `chat ${results.tag}` && m.username === "file"),
    "file:// page: the WebSocket chat opens, and a chat message comes back");
  check(results.errors.length === 0, `file:// page: no errors${results.errors.length ? ` (${results.errors.join("; ")})` : ""}`);
  await filePage.close();

  // 11. A page on another site (a name that resolves to 127.0.0.1 too, so
  // the browser has no local-network reason to block it: only the server
  // decides) may not post events or open the chat.
  foreignSite = createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    response.end("<!doctype html><html lang=\"en\"><title>elsewhere</title><p>another site</p></html>");
  });
  await new Promise((resolve) => foreignSite.listen(0, "127.0.0.1", resolve));
  const foreignOrigin = `http://${FOREIGN_NAME}:${foreignSite.address().port}`;
  const before = (await stats(server.url)).events_sent;
  const logStart = serverLog.length;
  const foreignPage = await context.newPage();
  await foreignPage.goto(`${foreignOrigin}/`);
  const attempts = await foreignPage.evaluate(async (target) => {
    const out = {};
    try {
      const r = await fetch(`${target}/trigger-event`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ message: "from elsewhere" }),
      });
      out.json = `answered ${r.status}`;
    } catch (error) {
      out.json = `failed (${error.name})`;
    }
    // No Content-Type: a "simple" request, sent without a preflight. The
    // server refuses it too, and its 403 may be read.
    const r = await fetch(`${target}/trigger-event`, { method: "POST", body: new Blob([JSON.stringify({ message: "simple" })]) });
    out.simple = { status: r.status, error: (await r.json()).error };
    out.ws = await new Promise((resolve) => {
      const ws = new WebSocket(`${target.replace(/^http/, "ws")}/ws`);
      ws.onopen = () => resolve("opened");
      ws.onclose = (e) => resolve(`closed with ${e.code}`);
    });
    return out;
  }, server.url);
  check(attempts.json === "failed (TypeError)",
    `page on ${foreignOrigin}: fetch POST of JSON is stopped at the preflight (${attempts.json})`);
  check(attempts.simple.status === 403 && attempts.simple.error.includes(`--allowed-origin ${foreignOrigin}`),
    `page on ${foreignOrigin}: a POST without a preflight gets 403 naming --allowed-origin ${foreignOrigin}`);
  check(attempts.ws === "closed with 1006", `page on ${foreignOrigin}: the WebSocket does not open (${attempts.ws})`);
  const refusals = logLines(logStart, `the origin "${foreignOrigin}" may not use this server`);
  check(refusals.length === 3, `the server itself refused all three (the preflight, the POST, the upgrade): ${refusals.length} log lines`);
  check((await stats(server.url)).events_sent === before, "nothing from that page was broadcast");
  await foreignPage.close();

  // 12. DNS rebinding: a name re-pointed at the server's address.
  const rebound = await context.newPage();
  const answer = await rebound.goto(`http://${REBOUND_NAME}:${server.port}/`);
  const text = await rebound.textContent("body");
  check(answer.status() === 421 && text.includes(`--allowed-host ${REBOUND_NAME}`),
    `http://${REBOUND_NAME}:${server.port}/ (resolved to 127.0.0.1) gets ${answer.status()} naming --allowed-host ${REBOUND_NAME}`);
  await rebound.close();
  await stopServer(server);
}

// ---------------------------------------------------------------------------
// The cluster: three instances, one Redis, nginx in front (lesson 19)
// ---------------------------------------------------------------------------

/** A free port on 127.0.0.1 (bound, then let go). */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createTcpServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Starts a helper program, its output kept in the log; resolves once a line matches `ready`. */
function startHelper(bin, args, ready) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    servers.add(proc);
    const timer = setTimeout(() => reject(new Error(`${bin} did not say it was ready within 10 s`)), 10_000);
    const read = (line) => {
      serverLog.push(`[${path.basename(bin)} ${proc.pid}] ${line}`);
      if (serverLog.length > 300) serverLog.shift();
      if (ready.test(line)) {
        clearTimeout(timer);
        resolve(proc);
      }
    };
    createInterface({ input: proc.stdout }).on("line", read);
    createInterface({ input: proc.stderr }).on("line", read);
    proc.on("exit", (code) => {
      servers.delete(proc);
      clearTimeout(timer);
      reject(new Error(`${bin} exited (code ${code}) before it was ready`));
    });
    proc.on("error", (error) => reject(new Error(`cannot run ${bin}: ${error.message}`)));
  });
}

/** nginx on tests/cluster/nginx.conf, its @ words filled in; resolves with its URL once it answers. */
async function startNginx(instances) {
  const listen = await freePort();
  const words = { "@DIR@": clusterDir, "@LISTEN@": listen, "@PORT_A@": instances[0].port, "@PORT_B@": instances[1].port, "@PORT_C@": instances[2].port };
  let conf = readFileSync(path.join(ROOT, "tests", "cluster", "nginx.conf"), "utf8");
  for (const [word, value] of Object.entries(words)) conf = conf.replaceAll(word, String(value));
  const confPath = path.join(clusterDir, "nginx.conf");
  writeFileSync(confPath, conf);
  const proc = spawn(NGINX, ["-p", clusterDir, "-e", path.join(clusterDir, "error.log"), "-c", confPath, "-g", "daemon off;"],
    // nginx reads $NGINX itself (as sockets handed over by an old
    // master), so ours, the path of the program, is not passed on.
    { stdio: ["ignore", "inherit", "inherit"], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "NGINX")) });
  servers.add(proc);
  gentle.add(proc);
  proc.on("exit", () => servers.delete(proc));
  const url = `http://127.0.0.1:${listen}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/stats`, { signal: AbortSignal.timeout(1000) })).ok) return url;
    } catch {}
    await sleep(100);
  }
  throw new Error(`nginx did not answer on ${url} within 10 s (see ${clusterDir}/error.log)`);
}

/** The ids of a page's broadcast items in the SSE panel (notifications and chat). */
const broadcastIds = (p) =>
  p.$$eval("#sse-messages li", (items) => items
    .filter((li) => li.dataset.type === "notification" || li.dataset.type === "chat")
    .map((li) => Number(li.dataset.id)));

async function waitMessageOn(p, list, type, text) {
  await p.waitForFunction(
    ([l, ty, tx]) => [...document.querySelectorAll(`${l} li`)].some((li) => li.dataset.type === ty && li.dataset.text === tx),
    [list, type, text],
    { timeout: WAIT_MS, polling: 50 },
  );
}

async function clusterChecks() {
  console.log("cluster: the page through nginx, three instances on one Redis:");
  clusterDir = mkdtempSync(path.join(tmpdir(), "realtime-by-hand-cluster-"));
  const redisPort = await freePort();
  await startHelper(REDIS_SERVER, ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", clusterDir],
    /Ready to accept connections/);
  const broker = `redis://127.0.0.1:${redisPort}/browser`;
  const instances = [];
  for (let i = 0; i < 3; i++) instances.push(await startServer(0, [...SERVER_ARGS, "--tick-secs", "0", "--broker", broker]));
  const front = await startNginx(instances);
  console.log(`  redis-server on ${redisPort}, instances on ${instances.map((i) => i.port).join(", ")}, nginx at ${front}`);

  // Two pages, both through nginx: round robin spreads their connections.
  const pages = [page, await context.newPage()];
  for (const p of pages) {
    await p.goto(`${front}/`);
    for (const badge of ["#sse-badge", "#ws-badge"]) {
      await p.waitForFunction((sel) => document.querySelector(sel)?.dataset.state === "connected", badge, { timeout: WAIT_MS, polling: 50 });
    }
  }
  ok("two pages through nginx: SSE and WebSocket connected on both");
  const spread = await Promise.all(instances.map(async (i) => (await stats(i.url)).sse_connections));
  check(spread.reduce((a, b) => a + b, 0) === 2, `their two event streams are on the instances as ${spread.join(" + ")}`);

  const tag = Math.random().toString(36).slice(2, 8);
  await pages[0].fill("#trigger-message", `cluster ${tag}`);
  await pages[0].click("#trigger-form button[type='submit']");
  for (const list of ["#sse-messages", "#ws-messages"]) await waitMessageOn(pages[1], list, "notification", `cluster ${tag}`);
  ok("an event triggered on one page reaches the other page's SSE and WebSocket panels");
  await pages[1].fill("#chat-username", "second");
  await pages[1].fill("#chat-message", `chat ${tag}`);
  await pages[1].click("#chat-form button[type='submit']");
  for (const list of ["#sse-messages", "#ws-messages"]) await waitMessageOn(pages[0], list, "chat", `second: chat ${tag}`);
  ok("a chat message from the other page reaches the first page's two panels");
  // Straight to the third instance, past nginx.
  await post(instances[2].url, `direct ${tag}`);
  for (const p of pages) await waitMessageOn(p, "#sse-messages", "notification", `direct ${tag}`);
  ok("an event posted straight to one instance reaches both pages");

  // The streams end every 2 s (--max-stream-secs) and come back through
  // nginx, usually to another instance: posts across those ends must each
  // arrive once, in order, with the cluster's ids.
  for (let n = 1; n <= 6; n++) {
    await post(front, `across ${tag} ${n}`);
    await sleep(800);
  }
  for (const p of pages) await waitMessageOn(p, "#sse-messages", "notification", `across ${tag} 6`);
  const [first, second] = await Promise.all(pages.map(broadcastIds));
  const sorted = [...first].sort((a, b) => a - b);
  const contiguous = sorted.every((id, i) => i === 0 || id === sorted[i - 1] + 1);
  check(JSON.stringify(first) === JSON.stringify(second) && contiguous && new Set(first).size === first.length,
    `both pages saw the same broadcasts, ids ${first.join(", ")}: none missing, none twice, across stream ends`);
  const resumedOn = new Set(serverLog.filter((l) => l.includes("opened an SSE stream resuming after")).map((l) => l.split("]")[0]));
  check(resumedOn.size >= 2, `the pages' streams resumed with Last-Event-ID on ${resumedOn.size} different instances`);
  const served = await Promise.all(instances.map(async (i) => (await stats(i.url)).open_connections));
  console.log(`  connections open per instance now: ${served.join(", ")}`);
  await pages[1].close();
}

// ---------------------------------------------------------------------------
// Running, with cleanup on every way out
// ---------------------------------------------------------------------------

async function cleanup() {
  if (context) {
    const closing = context.close().catch(() => {});
    await Promise.race([closing, sleep(5000)]);
    context = null;
  }
  for (const proc of servers) proc.kill(gentle.has(proc) ? "SIGTERM" : "SIGKILL");
  if (gentle.size) await sleep(500); // nginx's master stops its workers
  if (foreignSite) foreignSite.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (clusterDir) rmSync(clusterDir, { recursive: true, force: true });
}

async function failed(error) {
  console.error(`\nFAILED after ${elapsed()}: ${error && error.stack ? error.stack : error}`);
  if (page) {
    try {
      mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SCREENSHOTS, "failure.png"), fullPage: true, timeout: 5000 });
      console.error("  screenshot: tests/browser/screenshots/failure.png");
      const log = await page.evaluate(() => window.__badgeLog).catch(() => []);
      console.error(`  badge changes: ${JSON.stringify(log.slice(-20))}`);
    } catch {}
  }
  console.error("  server log (last lines):\n    " + serverLog.slice(-40).join("\n    "));
  await cleanup();
  console.log(`\n${passed.length} passed, 1 failed`);
  process.exit(1);
}

const overall = setTimeout(() => failed(new Error(`the whole run took longer than ${OVERALL_MS / 1000} s`)), OVERALL_MS);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => failed(new Error(`stopped by ${signal}`)));
}

try {
  await main();
  clearTimeout(overall);
  await cleanup();
  console.log(`\nbrowser test: everything asserted above held (${elapsed()})`);
  console.log(`${passed.length} passed, 0 failed`);
  process.exit(0);
} catch (error) {
  clearTimeout(overall);
  await failed(error);
}
