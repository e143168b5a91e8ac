// nats.js against a node with users, permissions and TLS: the same options a nats.js user passes to nats-server.
// usage: node auth.mjs URL CA_FILE   (the node: user alice/a with publish allow ["$mq9.AI.>", "_INBOX.>"], TLS)
import { connect, StringCodec } from "nats";
const [url, caFile] = process.argv.slice(2);
const sc = StringCodec();
const results = {};
const tls = { caFile };
try { await connect({ servers: url, user: "alice", pass: "wrong", tls, reconnect: false }); results.wrongPasswordRefused = false; }
catch (e) { results.wrongPasswordRefused = /authorization/i.test(String(e.message || e)); }
const nc = await connect({ servers: url, user: "alice", pass: "a", tls });
const box = JSON.parse(sc.decode((await nc.request("$mq9.AI.MAILBOX.CREATE", sc.encode('{"name":"js.secure","ttl":60}'), { timeout: 5000 })).data));
results.createOverTls = box.mail_id === "js.secure";
const errors = [];
(async () => { for await (const s of nc.status()) { errors.push(s.type + ": " + String(s.data && (s.data.message || s.data))); } })();
nc.publish("not.allowed", sc.encode("x"));
await nc.flush().catch(() => {});
const until = Date.now() + 5000;
// nats.js parses -ERR 'Permissions Violation for Publish to "..."' into a PERMISSIONS_VIOLATION status
while (!errors.some(e => /PERMISSIONS_VIOLATION/.test(e)) && Date.now() < until) await new Promise(r => setTimeout(r, 10));
results.permissionViolation = errors.some(e => /PERMISSIONS_VIOLATION/.test(e));
results.stillConnected = !nc.isClosed();
await nc.close();
console.log(JSON.stringify(results));
process.exit(Object.values(results).every(Boolean) ? 0 : 1);
