// An Express app with Node's defaults (keepAliveTimeout 5 s), for
// lingerprobe's tests. KEEP_ALIVE_TIMEOUT (ms) raises it, with
// headersTimeout above it as Node's documentation asks. It prints its port
// and exits when its stdin ends.
const express = require('express');

const app = express();
app.get('/', (req, res) => res.send('hello\n'));
app.post('/', (req, res) => res.send('hello\n'));

const server = app.listen(0, '127.0.0.1', () => {
	console.log(server.address().port);
});
const ka = Number(process.env.KEEP_ALIVE_TIMEOUT || 0);
if (ka > 0) {
	server.keepAliveTimeout = ka;
	server.headersTimeout = ka + 1000;
}
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
