// The `ws` package's WebSocketServer for lomond's interoperability tests.
//
// node server.js --max-size N [--no-compress]
//
// Listens on 127.0.0.1, port 0, prints the port on a line of its own, then serves
// until it is terminated or its standard input ends (the test process went away).
// At /echo it behaves as the Python servers of tests/realserver_apps.py do: it
// echoes every message (text as text, binary as binary), closes with CODE and
// REASON on the text "close:CODE:REASON", and refuses a message over --max-size
// bytes (maxPayload) the way `ws` does in production.
'use strict';

const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const options = { maxSize: null, compress: true };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--max-size') {
      options.maxSize = Number(argv[i + 1]);
      i += 1;
    } else if (argv[i] === '--no-compress') {
      options.compress = false;
    } else {
      throw new Error(`unknown argument: ${argv[i]}`);
    }
  }
  if (!Number.isInteger(options.maxSize) || options.maxSize <= 0) {
    throw new Error('--max-size N is required');
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  path: '/echo',
  maxPayload: options.maxSize,
  perMessageDeflate: options.compress,
});

server.on('listening', () => {
  process.stdout.write(`${server.address().port}\n`);
});

server.on('connection', (socket) => {
  // An oversized message is reported here after `ws` has sent its close frame.
  socket.on('error', () => {});
  socket.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString('utf8');
      if (text.startsWith('close:')) {
        const rest = text.slice('close:'.length);
        const colon = rest.indexOf(':');
        const code = Number(colon < 0 ? rest : rest.slice(0, colon));
        const reason = colon < 0 ? '' : rest.slice(colon + 1);
        socket.close(code, reason);
        return;
      }
    }
    socket.send(data, { binary: isBinary });
  });
});

// Exit with the test process: it holds our standard input open while it runs.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
