// The browser side of the videocall e2e test: Debian's Chromium driven by playwright-core
// (no browser download), fake camera, two pages on a page server of its own, each user's
// socket on a different `titan serve videocall` replica. Prints one JSON report.
"use strict";
const http = require("http");
const fs = require("fs");
const { chromium } = require("playwright-core");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const DEADLINE_MS = 60000;
// Each step on stderr: the test prints it when the script fails or hangs.
const step = (what) => process.stderr.write(`${new Date().toISOString()} ${what}\n`);

async function until(what, check) {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - started > DEADLINE_MS) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  const page = fs.readFileSync(env("PAGE"));
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(page);
  });
  await new Promise((r) => server.listen(Number(env("PAGE_PORT")), "127.0.0.1", r));
  const origin = `http://127.0.0.1:${env("PAGE_PORT")}`;
  step("launching chromium");
  const browser = await chromium.launch({
    timeout: DEADLINE_MS,
    executablePath: env("CHROMIUM"),
    args: [
      "--no-sandbox",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const report = {};
  try {
    const open = async (ws, token, role) => {
      step(`opening the ${role} page`);
      const p = await browser.newPage();
      p.on("console", (m) => step(`${role} console: ${m.text()}`));
      p.on("pageerror", (e) => step(`${role} page error: ${e}`));
      const url = `${origin}/?ws=${encodeURIComponent(ws)}&token=${token}&role=${role}`;
      await p.goto(url);
      await p.evaluate(() => window.titan.connect());
      return p;
    };
    const ann = await open(env("WS_A"), env("ANN"), "caller");
    const bob = await open(env("WS_B"), env("BOB"), "callee");
    step("calling");
    const callId = await ann.evaluate(() => window.titan.call("bob"));
    step(`call ${callId} placed`);
    report.callId = callId;
    // Both ends connected through the relay, and the remote video decoding more and more.
    for (const [name, p] of [["ann", ann], ["bob", bob]]) {
      step(`waiting for ${name}`);
      await until(`${name} connected`, () => p.evaluate(() => window.titan.state.connection === "connected"));
      const first = await until(`${name} decoding`, async () => {
        const s = await p.evaluate(() => window.titan.stats());
        return s.framesDecoded > 0 && s;
      });
      const later = await until(`${name} decoding more`, async () => {
        const s = await p.evaluate(() => window.titan.stats());
        return s.framesDecoded > first.framesDecoded && s;
      });
      report[name] = { connection: "connected", localCandidate: later.localCandidate, framesIncreased: true };
    }
    step("hanging up");
    await ann.evaluate(() => window.titan.hangUp());
    const ended = await until("ENDED on bob's page", () => bob.evaluate(() => window.titan.state.ended));
    report.ended = { status: ended.status, endReason: ended.endReason };

    // A stale credential: no relay candidate, and the TURN server answers 401.
    step("gathering with an expired credential");
    const stale = await open(env("WS_A"), env("ANN"), "caller");
    const gathered = await stale.evaluate(
      (servers) => window.titan.gatherWith(servers),
      JSON.parse(env("EXPIRED_ICE")),
    );
    report.expired = {
      iceErrors: [...new Set(gathered.iceErrors)],
      relayCandidates: (gathered.localDescription.match(/typ relay/g) || []).length,
    };
  } finally {
    await browser.close();
    server.close();
  }
  process.stdout.write(JSON.stringify(report));
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
