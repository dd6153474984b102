// The node-keepalive scenario's client (bench/scenarios_node.go starts it):
// Node.js's own keep-alive clients, http.Agent and the built-in fetch
// (undici), each on its own lanes, one connection per lane, sending their
// next request after an idle gap swept around the server's idle timeout.
//
// argv[2] is a JSON object: {url, kinds: ["agent", "fetch"], lanes,
// perLane, idleMs, jitterMs, timeoutMs}. Every lane sends one opening
// request, then perLane swept ones, each after idleMs + an offset from
// -jitterMs to +jitterMs (whole ms, spread evenly over a kind's requests),
// counted from the end of the previous response. It prints one JSON line:
// for each kind, the swept requests, how many got a 200, the failures by
// error code and by offset, how many were sent on a reused connection
// (the server numbers its requests per connection in X-Conn-Request) and
// the Keep-Alive headers seen. Everything is bounded by timeoutMs.

import http from 'node:http';

const cfg = JSON.parse(process.argv[2]);
const deadline = Date.now() + cfg.timeoutMs;
const reqTimeout = 5000;

setTimeout(() => {
	process.stderr.write('node client: timed out\n');
	process.exit(2);
}, cfg.timeoutMs + 5000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The outcome of one request: {ok, reused, keepAlive} or {err}.
function agentRequest(agent) {
	return new Promise((resolve) => {
		const req = http.request(cfg.url, { agent, method: 'POST', headers: { 'content-length': 4 } }, (res) => {
			const out = { ok: res.statusCode === 200, status: res.statusCode, reused: Number(res.headers['x-conn-request']) > 1, keepAlive: res.headers['keep-alive'] ?? '' };
			res.on('error', (err) => resolve({ err }));
			res.on('end', () => resolve(out));
			res.resume();
		});
		req.setTimeout(reqTimeout, () => req.destroy(new Error('request timeout')));
		req.on('error', (err) => resolve({ err }));
		req.end('ping');
	});
}

async function fetchRequest(dispatcher) {
	try {
		const opts = { method: 'POST', body: 'ping', signal: AbortSignal.timeout(reqTimeout) };
		if (dispatcher) opts.dispatcher = dispatcher;
		const res = await fetch(cfg.url, opts);
		await res.arrayBuffer();
		return { ok: res.status === 200, status: res.status, reused: Number(res.headers.get('x-conn-request')) > 1, keepAlive: res.headers.get('keep-alive') ?? '' };
	} catch (err) {
		return { err };
	}
}

// errorName is how a failure shows to the user's code: the error's code
// (ECONNRESET for "socket hang up"), and for fetch "fetch failed: " and
// its cause's code.
function errorName(err) {
	let name = err.code || err.name || 'error';
	if (err.message === 'socket hang up') name += ' (socket hang up)';
	if (err.cause) name = err.message + ': ' + (err.cause.code || err.cause.message);
	return name;
}

// The undici Agent class the built-in fetch uses, so each lane can have
// a dispatcher of its own with one connection; null if this Node does not
// expose it (then the lanes share fetch's global pool).
async function undiciAgent() {
	await fetchRequest(null); // makes the global dispatcher
	const g = globalThis[Symbol.for('undici.globalDispatcher.1')];
	return g && typeof g.constructor === 'function' ? g.constructor : null;
}

async function runKind(kind, FetchAgent) {
	const res = { kind, requests: 0, ok: 0, reused: 0, failures: {}, failedOffsets: {}, keepAlive: {}, perLaneDispatcher: kind === 'agent' || FetchAgent !== null };
	const span = 2 * cfg.jitterMs + 1;
	const note = (out, offset) => {
		if (offset !== null) res.requests++;
		if (out.err === undefined && out.keepAlive !== undefined) res.keepAlive[out.keepAlive || '(none)'] = (res.keepAlive[out.keepAlive || '(none)'] ?? 0) + 1;
		if (offset === null) return;
		if (out.ok) {
			res.ok++;
			if (out.reused) res.reused++;
			return;
		}
		const name = out.err ? errorName(out.err) : 'status ' + out.status;
		res.failures[name] = (res.failures[name] ?? 0) + 1;
		res.failedOffsets[offset] = (res.failedOffsets[offset] ?? 0) + 1;
	};
	const lane = async (i) => {
		let send;
		let close = () => {};
		if (kind === 'agent') {
			const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
			send = () => agentRequest(agent);
			close = () => agent.destroy();
		} else {
			const d = FetchAgent ? new FetchAgent({ connections: 1 }) : null;
			send = () => fetchRequest(d);
			if (d) close = () => d.close().catch(() => {});
		}
		note(await send(), null);
		for (let s = 0; s < cfg.perLane && Date.now() < deadline; s++) {
			const offset = ((i * cfg.perLane + s) % span) - cfg.jitterMs;
			await sleep(cfg.idleMs + offset);
			note(await send(), offset);
		}
		await close();
	};
	await Promise.all(Array.from({ length: cfg.lanes }, (_, i) => lane(i)));
	return res;
}

const FetchAgent = cfg.kinds.includes('fetch') ? await undiciAgent() : null;
const results = await Promise.all(cfg.kinds.map((k) => runKind(k, FetchAgent)));
process.stdout.write(JSON.stringify({ node: process.version, results }) + '\n');
