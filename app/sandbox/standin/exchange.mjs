// The join exchange on QNM's comm-node port (50000): QNM's peers ask the coordinator's comm node
// for the genesis and the coordinator's enode; the stand-in does the same over plain HTTP.
//
//   GET /join  ->  200 {"genesis": {...}, "enode": "enode://<id>@<IP>:20000", "nodeName": "...",
//                       "consensus": "raft"}

import { createServer } from 'node:http';

export const COMM_PORT = 50000;

/** Serve ``payload()`` at GET /join on 0.0.0.0:``port``; resolves with the listening server. */
export function serveJoin(payload, port = COMM_PORT) {
  const server = createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/join') {
      const body = JSON.stringify(payload());
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(body);
      return;
    }
    response.writeHead(404, { 'content-type': 'text/plain' });
    response.end('not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function valid(answer) {
  return (
    answer !== null &&
    typeof answer === 'object' &&
    typeof answer.enode === 'string' &&
    answer.enode.startsWith('enode://') &&
    answer.genesis !== null &&
    typeof answer.genesis === 'object'
  );
}

/**
 * Ask ``url`` until it answers a join; waits forever (QNM's peers do too), with back-off from 1 s
 * to 10 s and one log line per attempt. ``stopped()`` ends the wait early (resolves undefined).
 */
export async function awaitCoordinator(url, log, stopped) {
  let delay = 1000;
  for (let attempt = 1; !stopped(); attempt++) {
    let reason;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
      if (response.ok) {
        const answer = await response.json();
        if (valid(answer)) return answer;
        reason = 'an answer without genesis and enode';
      } else {
        reason = `HTTP ${response.status}`;
      }
    } catch (error) {
      reason = error.cause?.code ?? error.name ?? String(error);
    }
    log(`waiting for the coordinator at ${url} (attempt ${attempt}: ${reason}); next try in ${delay / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
  return undefined;
}
