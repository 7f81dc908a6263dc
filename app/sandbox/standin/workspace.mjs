// The stand-in's files, laid out like QNM's in its working directory:
//
//   Blockchain/genesis.json        the geth-style clique genesis (the coordinator writes it; a
//                                  peer writes the one the coordinator handed it)
//   Blockchain/nodekey             the devp2p key (hex, like geth's): same key, same enode
//   Blockchain/keystore/account    this node's account key (hex); the coordinator's seals blocks
//   Blockchain/standin/...         the client's LevelDB databases (chain, state, meta)
//   Constellation/tm.pub           a placeholder transaction-manager key (nothing reads it)
//
// KEEP_FILES=true keeps all of it across restarts (same enode, same chain); anything else wipes
// both folders at start, as QNM does.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { bytesToHex, createAddressFromPrivateKey, hexToBytes } from '@ethereumjs/util';

export const CHAIN_ID = 1337;
export const CHAIN_NAME = 'standin'; // the client's data folder under Blockchain/
export const BLOCK_PERIOD = 2; // seconds between clique blocks

const ZERO32 = `0x${'00'.repeat(32)}`;

function readHexKey(path) {
  const text = readFileSync(path, 'utf8').trim();
  const key = hexToBytes(`0x${text.replace(/^0x/, '')}`);
  if (key.length !== 32) throw new Error(`${path} does not hold a 32-byte key`);
  return key;
}

function keyAt(path) {
  if (existsSync(path)) return { key: readHexKey(path), created: false };
  const key = new Uint8Array(randomBytes(32));
  writeFileSync(path, `${bytesToHex(key).slice(2)}\n`, { mode: 0o600 });
  return { key, created: true };
}

/** The folders of a node in ``cwd``: wiped first unless ``keep``; keys made when missing. */
export function prepareWorkspace(cwd, keep) {
  const blockchain = join(cwd, 'Blockchain');
  const constellation = join(cwd, 'Constellation');
  if (!keep) {
    rmSync(blockchain, { recursive: true, force: true });
    rmSync(constellation, { recursive: true, force: true });
  }
  mkdirSync(join(blockchain, 'keystore'), { recursive: true });
  mkdirSync(constellation, { recursive: true });
  const node = keyAt(join(blockchain, 'nodekey'));
  const account = keyAt(join(blockchain, 'keystore', 'account'));
  const tm = join(constellation, 'tm.pub');
  if (!existsSync(tm)) writeFileSync(tm, `${randomBytes(32).toString('base64')}\n`);
  return {
    blockchain,
    constellation,
    genesisPath: join(blockchain, 'genesis.json'),
    nodeKey: node.key,
    accountKey: account.key,
    address: createAddressFromPrivateKey(account.key),
    accountCreated: account.created,
  };
}

/** A geth-style genesis whose only clique signer is ``signer`` (an Address). */
export function cliqueGenesis(signer) {
  const addr = signer.toString().slice(2);
  return {
    config: {
      chainId: CHAIN_ID,
      homesteadBlock: 0,
      eip150Block: 0,
      eip155Block: 0,
      eip158Block: 0,
      byzantiumBlock: 0,
      constantinopleBlock: 0,
      petersburgBlock: 0,
      istanbulBlock: 0,
      berlinBlock: 0,
      londonBlock: 0,
      clique: { period: BLOCK_PERIOD, epoch: 30000 },
    },
    nonce: '0x0',
    timestamp: `0x${Math.floor(Date.now() / 1000).toString(16)}`,
    // clique: 32 vanity bytes, the signers, 65 bytes for the (absent) seal
    extraData: `0x${'00'.repeat(32)}${addr}${'00'.repeat(65)}`,
    gasLimit: '0x47b760',
    difficulty: '0x1',
    mixHash: ZERO32,
    coinbase: `0x${'00'.repeat(20)}`,
    number: '0x0',
    gasUsed: '0x0',
    parentHash: ZERO32,
    baseFeePerGas: '0x7',
    alloc: { [addr]: { balance: '0x200000000000000000000' } },
  };
}

export function readGenesis(path) {
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined;
}

export function writeGenesis(path, genesis) {
  writeFileSync(path, `${JSON.stringify(genesis, null, 2)}\n`);
}

/** Remove the chain's databases (keys and genesis stay). */
export function dropChain(blockchain) {
  rmSync(join(blockchain, CHAIN_NAME), { recursive: true, force: true });
}
