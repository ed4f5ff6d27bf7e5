// Drives two servers with the same client messages and checks that every client
// receives byte-identical frames from both (vsn 2.0.0, raw `ws`, no phoenix client).
//
//   node bench/limit/compare.mjs <port A> <port B>     (SHOW=1 also prints A's frames, blasted omitted)
//   e.g. A = the conformance app (PORT=4201 MIX_ENV=test mix fenix.conformance),
//        B = the limit server (PORT=4202 target/release/fenix-limit)
import WebSocket from "ws";

const [portA, portB] = process.argv.slice(2);
if (!portA || !portB) {
  console.error("usage: node compare.mjs <port A> <port B>");
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// [client, message] steps; clients connect first. Each client's received frames are compared.
const clients = { u1: "user_id=u1", u2: "user_id=u%202%2B", anon: "" };
const steps = [
  ["u1", '["1","1","room:cmp","phx_join",{}]'],
  ["u2", '["3","3","room:cmp","phx_join",{"track":false}]'],
  ["anon", '[null,"1","room:cmp","phx_join",{}]'],
  ["u1", '[null,"2","phoenix","heartbeat",{}]'],
  ["u1", '["1","3","room:cmp","echo",{"hello":"world","n":1}]'],
  ["u1", '["1","4","room:cmp","echo",{"z": 1, "a": [1.5, 1e3, -0, 0.1, "é\\u2028/\\"\\\\\\u0001"], "m": {"y": null, "x": true}}]'],
  ["u2", '["3","4","room:cmp","shout",{"msg":"hi all","b":[1,2]}]'],
  ["u1", '["1","5","room:cmp","blast",{"n":3,"body":"b"}]'],
  ["u2", '["3","5","room:cmp","blast",{"n":300,"body":{"k":"v","a":1}}]'],
  ["anon", '[null,"2","room:cmp","blast",{"n":0,"body":null}]'],
  ["u1", '["0","6","room:cmp","echo",{"stale":true}]'],
  ["u1", '[null,"7","room:cmp","echo",{"null_join_ref":true}]'],
  ["u1", '["1","8","room:never","echo",{}]'],
  ["u1", '["9","9","other:x","phx_join",{}]'],
  ["u1", '["10","10","room:cmp","phx_join",{}]'],
  ["u1", '["10","11","room:cmp","shout",{"after":"rejoin"}]'],
  ["u2", '["3","6","room:cmp","no_such_event",{}]'],
  ["u2", '["3","7","room:cmp","echo",{}]'],
  ["anon", '[null,"3","room:cmp","phx_leave",{}]'],
  ["u1", '["10","12","room:cmp","shout",{"to":"u1 only"}]'],
  ["u1", '["10","13","room:cmp","blast",{"n":1}]'],
  ["u1", '["14","14","room:two","phx_join",{}]'],
  ["u1", '["14","15","room:two","phx_leave",{}]'],
];

async function run(port) {
  const got = {}, conns = {};
  let headers = null;
  for (const [name, query] of Object.entries(clients)) {
    got[name] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket/websocket?${query}${query ? "&" : ""}vsn=2.0.0`);
    ws.on("upgrade", (res) => {
      headers ??= res.rawHeaders.map((h, i) => (res.rawHeaders[i - 1] === "sec-websocket-accept" ? "<accept>" : h));
    });
    ws.on("message", (data, isBinary) => got[name].push(`${isBinary ? "BIN" : "TXT"} ${data.toString()}`));
    ws.on("close", (code, reason) => got[name].push(`CLOSE ${code} ${reason}`));
    await new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); });
    conns[name] = ws;
  }
  for (const [name, message] of steps) {
    conns[name].send(message);
    await sleep(message.includes("blast") ? 300 : 60);
  }
  for (const ws of Object.values(conns)) ws.close();
  await sleep(200);
  return { headers, got };
}

const a = await run(portA);
const b = await run(portB);
let failures = 0;
const check = (label, x, y) => {
  if (x === y) return;
  failures++;
  console.log(`DIFF ${label}\n  A: ${x}\n  B: ${y}`);
};
check("101 headers", JSON.stringify(a.headers), JSON.stringify(b.headers));
for (const name of Object.keys(clients)) {
  const [x, y] = [a.got[name], b.got[name]];
  for (let i = 0; i < Math.max(x.length, y.length); i++) check(`${name} frame ${i + 1}`, x[i], y[i]);
  console.log(`${name}: ${x.length} frames from A, ${y.length} from B`);
  if (process.env.SHOW) for (const f of x) if (!f.includes('"blasted"')) console.log(`  ${f}`);
}
console.log(failures ? `FAIL: ${failures} differences` : "OK: identical frames");
process.exit(failures ? 1 : 0);
