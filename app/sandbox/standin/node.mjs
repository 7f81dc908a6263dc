// The EthereumJS execution client, run in this process through its library API (no child
// process: one Node.js heap per node instead of two).
//
// Networking: devp2p/RLPx on 0.0.0.0:20000 with the advertised address (extIP) in the enode; no
// discovery at all (DNS and v4 off, no bootnodes: a bootnode is first pinged over UDP, and a
// Kubernetes Service here forwards TCP only). A peer instead dials the coordinator's enode over
// TCP as a static peer, and dials again whenever it has no connection to it.
//
// Keeping up (see main.mjs): on every NewBlock announcement the announcing peer's recorded total
// difficulty and best hash are raised to what the announcement says, so the client's full sync
// keeps choosing that peer to fetch from.

import process from 'node:process';

import { createCommonFromGethGenesis, parseGethGenesisState } from '@ethereumjs/common';
import { bytesToBigInt, hexToBytes } from '@ethereumjs/util';
import { Config } from '@ethereumjs/client/dist/esm/src/config.js';
import { getLogger } from '@ethereumjs/client/dist/esm/src/logging.js';
import { RPCManager } from '@ethereumjs/client/dist/esm/src/rpc/index.js';
import { Synchronizer } from '@ethereumjs/client/dist/esm/src/sync/sync.js';
import { Event } from '@ethereumjs/client/dist/esm/src/types.js';
import { createInlineClient } from '@ethereumjs/client/dist/esm/src/util/inclineClient.js';
import {
  MethodConfig,
  createRPCServer,
  createRPCServerListener,
} from '@ethereumjs/client/dist/esm/src/util/rpc.js';

import { CHAIN_NAME } from './workspace.mjs';

export const P2P_PORT = 20000;
export const RPC_PORT = 20010;
const REDIAL_MS = 3000;
const SYNC_INTERVAL_MS = 1000;

/** enode://<128 hex>@<ipv4>:<port> -> {id, address, tcpPort} */
export function parseEnode(enode) {
  const match = /^enode:\/\/([0-9a-fA-F]{128})@(\d+\.\d+\.\d+\.\d+):(\d+)/.exec(enode);
  if (match === null) throw new Error(`not an enode with an IPv4 address: ${enode}`);
  return { id: match[1].toLowerCase(), address: match[2], tcpPort: Number(match[3]) };
}

/** Raise a peer's recorded td/best hash on NewBlock: the client records them only at handshake. */
function followAnnouncements(config) {
  config.events.on(Event.PROTOCOL_MESSAGE, (message, protocol, peer) => {
    if (protocol !== 'eth' || message.name !== 'NewBlock' || peer?.eth?.status === undefined) {
      return;
    }
    const [block, rawTd] = message.data;
    const td = typeof rawTd === 'bigint' ? rawTd : bytesToBigInt(rawTd);
    if (td > peer.eth.status.td) peer.eth.status = { td, bestHash: block.hash() };
    // and the sync target, which is the block number the sync asks the peer's header of: else
    // each sync round reaches only one block further than the last
    const number = block.header.number;
    if (config.syncTargetHeight === undefined || number > config.syncTargetHeight) {
      config.syncTargetHeight = number;
    }
  });
}

/**
 * One sync attempt at a time. The client's sync loop starts an attempt, which waits (polling
 * every 5 s, until a peer qualifies) for a peer to sync from; the attempt's caller gives up on it
 * whenever the node calls itself synchronized (each new block) and starts another, while the old
 * one keeps polling: one more poller per block, forever (a coordinator had 76 after 76 blocks).
 * Handing the caller the attempt already under way keeps it at one.
 */
function singleFlightSync() {
  const attempt = Synchronizer.prototype.sync;
  if (attempt.standinSingleFlight === true) return;
  const single = function () {
    if (this.standinAttempt === undefined) {
      this.standinAttempt = attempt.call(this).finally(() => {
        this.standinAttempt = undefined;
      });
    }
    return this.standinAttempt;
  };
  single.standinSingleFlight = true;
  Synchronizer.prototype.sync = single;
}

/** Dial ``enode`` now and whenever this node has no connection to it. */
function keepDialing(client, enode, log) {
  const target = parseEnode(enode);
  const connected = () => client.service.pool.peers.some((p) => p.id === target.id);
  let failing = false;
  const dial = () => {
    const rlpx = client.config.server?.rlpx;
    if (rlpx === undefined || connected()) return;
    rlpx
      .connect({ id: hexToBytes(`0x${target.id}`), address: target.address, tcpPort: target.tcpPort })
      .then(() => {
        failing = false;
      })
      .catch((error) => {
        if (error.message.includes('Already connected')) return; // handshake under way
        if (!failing) log(`dialing ${target.address}:${target.tcpPort} failed (${error.message}); retrying every ${REDIAL_MS / 1000}s`);
        failing = true;
      });
  };
  log(`dialing the coordinator ${target.address}:${target.tcpPort}`);
  dial();
  return setInterval(dial, REDIAL_MS);
}

function reportMilestones(config, client, log) {
  config.events.on(Event.PEER_CONNECTED, (peer) => {
    log(`peer connected: ${peer.id.slice(0, 16)}… at ${peer.address}`);
  });
  config.events.on(Event.PEER_DISCONNECTED, (peer) => {
    log(`peer disconnected: ${peer.id.slice(0, 16)}…`);
  });
  let first = true;
  let lastReport = 0;
  config.events.on(Event.CHAIN_UPDATED, () => {
    const height = client.chain.headers.height;
    const now = Date.now();
    if (first || now - lastReport >= 60000) {
      const rss = Math.round(process.memoryUsage.rss() / 2 ** 20);
      log(`${first ? 'first block: ' : ''}height ${height}, peers ${client.service.pool.size}, rss ${rss} MB`);
      first = false;
      lastReport = now;
    }
  });
}

/**
 * Start the client. ``signer`` is {address, key} of the sealing account (coordinator) or undefined;
 * ``staticPeer`` the enode to keep a connection to (peer) or undefined.
 * Resolves {client, enode, stop()} once p2p and JSON-RPC listen.
 */
export async function startNode({ datadir, genesis, nodeKey, coinbase, signer, extIP, staticPeer, log, clientLogLevel }) {
  const common = createCommonFromGethGenesis(genesis, { chain: CHAIN_NAME });
  const genesisState = parseGethGenesisState(genesis);
  const config = new Config({
    common,
    datadir,
    key: nodeKey,
    port: P2P_PORT,
    extIP,
    bootnodes: [],
    discDns: false,
    discV4: false,
    dnsAddr: '127.0.0.1', // never used (DNS discovery is off); loopback all the same
    mine: signer !== undefined,
    accounts: signer === undefined ? [] : [[signer.address, signer.key]],
    minerCoinbase: coinbase, // what eth_coinbase answers (this node's account, as on QNM)
    isSingleNode: signer !== undefined, // the signer needs nobody to call itself synchronized
    minPeers: 1,
    maxPeers: 25,
    safeReorgDistance: 2, // one clique signer never reorgs: a sync round refetches 2 blocks, not 100
    logger: getLogger({ logLevel: clientLogLevel }),
  });
  let enode;
  config.events.on(Event.SERVER_LISTENING, (details) => {
    if (details.transport === 'rlpx') enode = details.url;
  });
  let bindError;
  config.events.on(Event.SERVER_ERROR, (error) => {
    if (String(error?.message).includes('EADDRINUSE')) bindError = error;
  });
  followAnnouncements(config);
  singleFlightSync();
  const client = await createInlineClient(config, common, genesisState, datadir);
  // the client only warns when it cannot listen for p2p: without p2p this is no node
  if (bindError !== undefined) throw new Error(`p2p port ${P2P_PORT}: ${bindError.message}`);
  // The service hands its synchronizer an 8 s interval (pause between sync rounds, and the wait
  // in stop()): with 2 s blocks that is four blocks behind, and a SIGTERM would take 8 s.
  if (client.service.synchronizer !== undefined) client.service.synchronizer.interval = SYNC_INTERVAL_MS;
  // The pool asks every peer for its newest header every 5 s, in step with the sync's own asking:
  // two GetBlockHeaders in flight to one peer share one reply slot (the client keys pending
  // requests by message type), so one of them waits for its 8 s timeout and the peer stays busy
  // meanwhile (the first import came 12-17 s after connecting). Announcements now keep the sync
  // target current (followAnnouncements), so the poll is not needed.
  clearInterval(client.service.pool._peerBestHeaderUpdateInterval);
  reportMilestones(config, client, log);
  if (enode === undefined) enode = client.config.server?.getRlpxInfo().enode;
  log(`p2p listening on 0.0.0.0:${P2P_PORT}, enode ${enode}`);

  const manager = new RPCManager(client, config);
  const { server, namespaces } = createRPCServer(manager, {
    methodConfig: MethodConfig.WithoutEngine,
    rpcDebug: '',
    rpcDebugVerbose: '',
    logger: config.logger,
  });
  const rpc = createRPCServerListener({ RPCCors: '*', server });
  await new Promise((resolve, reject) => {
    rpc.once('error', reject);
    rpc.listen(RPC_PORT, '0.0.0.0', () => {
      rpc.off('error', reject);
      resolve();
    });
  });
  log(`JSON-RPC listening on 0.0.0.0:${RPC_PORT} (${namespaces})`);

  const dialer = staticPeer === undefined ? undefined : keepDialing(client, staticPeer, log);
  const stop = async () => {
    clearInterval(dialer);
    rpc.close();
    rpc.closeAllConnections?.();
    await client.stop();
    await client.chain.close();
  };
  return { client, enode, stop };
}
