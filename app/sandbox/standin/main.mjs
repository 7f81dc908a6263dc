// The QNM stand-in: what the sandbox runs for a pod of the QuorumNetworkManager image.
//
// It behaves like QNM where QaaS can see it, on a real Ethereum node: the EthereumJS execution
// client (@ethereumjs/client, pinned in package.json), run in this process through its library
// API. Clique proof-of-authority stands in for raft and istanbul (CONSENSUS is logged, not used):
// neither raft_* nor istanbul_* answers.
//
// Command line (from the pod's working directory, which holds its files):
//
//   node --max-semi-space-size=1 app/sandbox/standin/main.mjs
//
// (after `npm ci --prefix app/sandbox/standin`, which ./dev setup runs). The V8 flag keeps the
// young generation small: ~125 MB RSS a node instead of ~150, at the same CPU (~4% of a core).
//
// Environment (QNM's names):
//   ROLE             coordinator | dynamicPeer                                   (required)
//   IP               the address this node ADVERTISES, its Service ClusterIP: it is the
//                    enode's host (the client's extIP); it need not be a local address  (required)
//   COORDINATING_IP  the coordinator's address (peers; required for dynamicPeer)
//   CONSENSUS        raft | istanbul (logged only)         NODE_NAME  a name for the logs
//   KEEP_FILES       "true": reuse ./Blockchain and ./Constellation (same nodekey, so the same
//                    enode; same chain); anything else wipes them at start
//   STANDIN_CLIENT_LOG  the client's own log level (error|warn|info|debug; default warn)
//
// Ports (all on 0.0.0.0, like QNM's): 20000 devp2p/RLPx (TCP only), 20010 JSON-RPC over HTTP
// (eth, net, web3, admin, txpool, debug), 50000 the join exchange (coordinator only).
//
// Coordinator: makes (or keeps) an account key and a geth-style clique genesis with that account
// as the only signer (2 s period, chainId 1337), starts the client sealing, then serves GET /join
// on 50000 -> {genesis, enode}, the enode naming IP:20000.
// dynamicPeer: asks http://COORDINATING_IP:50000/join until it answers (forever, with back-off
// 1..10 s, one "waiting for the coordinator at ..." line per try; no port of its own is open
// meanwhile), writes the genesis, starts the client and dials the coordinator's enode over TCP,
// again whenever the connection is gone. A kept chain whose genesis differs from the coordinator's
// is dropped (keys stay). Files: see workspace.mjs. Logs: one "[standin]" line per milestone on
// stdout (the client's own lines too, at STANDIN_CLIENT_LOG). SIGTERM/SIGINT: stop the client,
// close its databases, exit 0 (forced after 5 s); a fatal error exits 1.
//
// Why a peer used to stop following (the earlier try: "imported blocks 1-6, then only 'New sync
// target height=N'"), found in the client's source (0.10.5) and its debug log:
//  1. Full sync picks a peer to fetch from only if the total difficulty the peer announced AT
//     HANDSHAKE is at least the local one (FullSynchronizer.best, for a clique chain without a
//     merge block). The client never updates a peer's td after the handshake, so once the joiner
//     has imported up to the coordinator's height at connect time, best() finds nobody and the
//     sync loop waits for a peer forever. Its periodic header poll still raises the sync target,
//     hence the growing "New sync target height=N" lines without imports.
//  2. A NewBlock announcement is imported only if it is exactly the next block; one arriving while
//     the node is two or more behind (during the first batch, say) is dropped, and NewBlockHashes
//     are ignored when no fetcher runs. So after one missed block nothing catches up.
// Not the cause: the block period, the signer or difficulty settings (one signer, in-turn
// difficulty 2), the sync mode (full is the only one for this chain) or a flag. 0.9.0 and 0.10.4
// have the same best() rule, so 0.10.5 (the newest) stays. The work-arounds (node.mjs; the first,
// second and fourth fail tests/sandbox/test_standin.py when taken out):
//  - on NewBlock, the announcing peer's td and best hash and the node's sync target are raised to
//    the announced ones (what geth does), so best() picks the peer again and the client's own
//    fetcher imports the missing blocks in one round; the next block then arrives as a NewBlock
//    and is imported directly;
//  - one sync attempt at a time: the client starts one more attempt per block, each polling for a
//    peer every 5 s forever (a coordinator had 76 pollers after 76 blocks);
//  - the pool's 5 s header poll is off: it ran in step with the sync's own request, and two
//    header requests to one peer share one reply slot, so one waited for its 8 s timeout;
//  - the synchronizer's pause is 1 s instead of 8 s (it is also what SIGTERM waited for).
// Measured (two namespaces, a peer joining at height 8+): the peer imports the chain about 5 s
// after connecting and then stays within a block of the coordinator (largest lag sampled: 0);
// 28-30 blocks/min on both; first JSON-RPC answer 1-2 s after start; SIGTERM to exit about 1 s.

import process from 'node:process';

import { awaitCoordinator, COMM_PORT, serveJoin } from './exchange.mjs';
import { startNode } from './node.mjs';
import {
  cliqueGenesis,
  dropChain,
  prepareWorkspace,
  readGenesis,
  writeGenesis,
} from './workspace.mjs';

const STOP_GRACE_MS = 5000;

function log(message) {
  process.stdout.write(`${new Date().toISOString()} [standin] ${message}\n`);
}

function fail(message) {
  process.stderr.write(`${new Date().toISOString()} [standin] fatal: ${message}\n`);
  process.exit(1);
}

function readEnvironment(env) {
  const role = env.ROLE;
  if (role !== 'coordinator' && role !== 'dynamicPeer') {
    fail(`ROLE must be coordinator or dynamicPeer, not ${JSON.stringify(role)}`);
  }
  const ipv4 = /^\d{1,3}(\.\d{1,3}){3}$/;
  if (!ipv4.test(env.IP ?? '')) fail(`IP must be the IPv4 address this node advertises, not ${JSON.stringify(env.IP)}`);
  if (role === 'dynamicPeer' && !ipv4.test(env.COORDINATING_IP ?? '')) {
    fail(`a dynamicPeer needs COORDINATING_IP (an IPv4 address), not ${JSON.stringify(env.COORDINATING_IP)}`);
  }
  return {
    role,
    ip: env.IP,
    coordinatingIp: env.COORDINATING_IP,
    consensus: env.CONSENSUS ?? 'raft',
    nodeName: env.NODE_NAME ?? 'node',
    keep: env.KEEP_FILES === 'true',
    clientLogLevel: env.STANDIN_CLIENT_LOG ?? 'warn',
  };
}

async function coordinator(env, files, state) {
  let genesis = readGenesis(files.genesisPath);
  const signerHex = files.address.toString().slice(2).toLowerCase();
  if (genesis === undefined || files.accountCreated || !String(genesis.extraData).toLowerCase().includes(signerHex)) {
    genesis = cliqueGenesis(files.address);
    writeGenesis(files.genesisPath, genesis);
    dropChain(files.blockchain);
    log(`new clique genesis: signer ${files.address}`);
  } else {
    log(`kept genesis and chain (KEEP_FILES): signer ${files.address}`);
  }
  state.node = await startNode({
    datadir: files.blockchain,
    genesis,
    nodeKey: files.nodeKey,
    coinbase: files.address,
    signer: { address: files.address, key: files.accountKey },
    extIP: env.ip,
    log,
    clientLogLevel: env.clientLogLevel,
  });
  const payload = { genesis, enode: state.node.enode, nodeName: env.nodeName, consensus: env.consensus };
  state.comm = await serveJoin(() => payload);
  log(`serving the join exchange on 0.0.0.0:${COMM_PORT} (GET /join)`);
}

async function dynamicPeer(env, files, state) {
  const url = `http://${env.coordinatingIp}:${COMM_PORT}/join`;
  state.phase = 'waiting';
  const join = await awaitCoordinator(url, log, () => state.stopping);
  if (join === undefined) return;
  state.phase = 'starting';
  log(`joined: the coordinator ${join.nodeName ?? '?'} is ${join.enode}`);
  const kept = readGenesis(files.genesisPath);
  if (kept !== undefined && JSON.stringify(kept) !== JSON.stringify(join.genesis)) {
    log('the kept chain has another genesis than the coordinator: dropping it');
    dropChain(files.blockchain);
  }
  writeGenesis(files.genesisPath, join.genesis);
  if (state.stopping) return;
  state.node = await startNode({
    datadir: files.blockchain,
    genesis: join.genesis,
    nodeKey: files.nodeKey,
    coinbase: files.address,
    signer: undefined,
    extIP: env.ip,
    staticPeer: join.enode,
    log,
    clientLogLevel: env.clientLogLevel,
  });
}

async function shutdown(state, signal) {
  if (state.stopping) return;
  state.stopping = true;
  log(`${signal}: stopping`);
  setTimeout(() => {
    log(`still stopping after ${STOP_GRACE_MS / 1000}s: exiting anyway`);
    process.exit(0);
  }, STOP_GRACE_MS).unref();
  state.comm?.close();
  if (state.phase === 'waiting') {
    log('stopped (had not joined)');
    process.exit(0);
  }
  try {
    await state.started;
    await state.node?.stop();
  } catch (error) {
    log(`error while stopping: ${error.message}`);
  }
  log('stopped');
  process.exit(0);
}

function main() {
  const env = readEnvironment(process.env);
  const state = { phase: 'starting', stopping: false, node: undefined, comm: undefined, started: undefined };
  process.on('SIGTERM', () => void shutdown(state, 'SIGTERM'));
  process.on('SIGINT', () => void shutdown(state, 'SIGINT'));
  log(`starting ${env.role} ${env.nodeName}: IP ${env.ip}, CONSENSUS ${env.consensus} (sealed with clique), KEEP_FILES ${env.keep}, cwd ${process.cwd()}`);
  const files = prepareWorkspace(process.cwd(), env.keep);
  const run = env.role === 'coordinator' ? coordinator : dynamicPeer;
  state.started = run(env, files, state).catch((error) => {
    fail(error.stack ?? String(error));
  });
}

main();
