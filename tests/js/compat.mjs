// nats.js against an mq9 node: core pub/sub, request/reply, headers, no-responders, mq9 create/send/replay.
import { connect, StringCodec, headers, Empty } from "nats";
const url = process.argv[2];
const sc = StringCodec();
const nc = await connect({ servers: url });
const results = {};
// core pub/sub with wildcard
const sub = nc.subscribe("js.*");
const got = [];
(async () => { for await (const m of sub) { got.push(sc.decode(m.data)); if (got.length === 3) break; } })();
await nc.flush();
for (const s of ["js.a", "js.b", "other", "js.c"]) nc.publish(s, sc.encode(s));
await nc.flush();
const until = Date.now() + 5000;  // wait for the condition, with a deadline
while (got.length < 3 && Date.now() < until) await new Promise(r => setTimeout(r, 10));
results.pubsub = JSON.stringify(got) === JSON.stringify(["js.a", "js.b", "js.c"]);
// request/reply with headers
const svc = nc.subscribe("svc.echo");
(async () => { for await (const m of svc) { const h = headers(); h.set("Served-By", "js"); m.respond(m.data, { headers: h }); } })();
await nc.flush();
const h = headers(); h.set("Trace-Id", "t1");
const r = await nc.request("svc.echo", sc.encode("hi"), { timeout: 2000, headers: h });
results.request = sc.decode(r.data) === "hi" && r.headers.get("Served-By") === "js";
// no responders
try { await nc.request("nobody.here", Empty, { timeout: 2000 }); results.noResponders = false; }
catch (e) { results.noResponders = String(e.code) === "503"; }
// mq9: create, send, replay by priority
const box = JSON.parse(sc.decode((await nc.request("$mq9.AI.MAILBOX.CREATE", sc.encode('{"ttl": 60}'), { timeout: 5000 })).data));
for (const [w, b] of [["low", "l"], ["critical", "c"], ["normal", "n"]]) {
  await nc.request(`$mq9.AI.MAILBOX.MSG.${box.mail_id}.${w}`, sc.encode(b), { timeout: 5000 });
}
const mb = nc.subscribe(`$mq9.AI.MAILBOX.MSG.${box.mail_id}.*`, { max: 3 });
const order = [];
for await (const m of mb) { order.push(sc.decode(m.data) + ":" + m.headers.get("mq9-priority")); }
results.mq9 = JSON.stringify(order) === JSON.stringify(["c:critical", "n:normal", "l:low"]);
await nc.drain();
console.log(JSON.stringify(results));
process.exit(Object.values(results).every(Boolean) ? 0 : 1);
