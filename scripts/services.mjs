#!/usr/bin/env node
// scripts/services.mjs: throwaway local Redis + PostgreSQL servers for the test suite, CI
// (.ci/run) and the daemon when it is started with no configuration.
//
// Dependency-free on purpose (node: builtins only), so it runs before `npm ci`.
//
//   node scripts/services.mjs start   [--dir DIR]  start both servers, or reuse them if they are running.
//                                                  stdout: exactly two lines, REDIS_URL=… and DATABASE_URL=…
//                                                  (also written to DIR/services.env); progress goes to stderr
//   node scripts/services.mjs stop    [--dir DIR]  stop both; succeeds quietly if they are not running
//   node scripts/services.mjs env     [--dir DIR]  print the two lines if both answer; else exit 1
//   node scripts/services.mjs status  [--dir DIR]  print a JSON status; exit 0 only if both answer
//   node scripts/services.mjs reset   [--dir DIR]  stop, then delete the data
//
// DIR defaults to $RPS_DATA_DIR, or else <repo>/.data. Layout:
//   DIR/services.json   ports, pids, versions (start reuses live servers, stop finds them)
//   DIR/services.env    REDIS_URL=… / DATABASE_URL=…
//   DIR/.lock           held while starting, stopping or resetting (concurrent `start`s run one at a time)
//   DIR/redis/          redis.pid, redis.log (no persistence: --save "" --appendonly no)
//   DIR/pg/             PostgreSQL cluster (initdb -A trust -U postgres), postgres.log
//   DIR/pg-socket/      PostgreSQL unix socket directory
//   DIR/pg.location     only when running as root and DIR is not reachable by the unprivileged
//                       PostgreSQL user: the cluster then lives in /var/tmp/rpsync-<hash>/pg (see below)
//
// As a module:  const { start, stop, status, reset } = await import('./scripts/services.mjs')
//   await start({ dir?, quiet?, log? }) -> { redisUrl, databaseUrl, reused }
//   await stop({ dir?, quiet?, log? })  -> { redisStopped, postgresStopped }
//   await status({ dir? })              -> { running, redisUrl, databaseUrl, redis: {…}, postgres: {…} }
// The module never writes to stdout and never exits the process; failures are thrown as Errors
// whose message is one line.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SCRIPT), '..');

const LOCK_STALE_MS = 120_000; // a lock whose mtime is older than this is considered abandoned
const LOCK_HEARTBEAT_MS = 10_000; // the holder touches the lock this often (apt-get can take minutes)
const LOCK_WAIT_MS = 15 * 60_000;
const REDIS_READY_MS = 15_000;
const PG_START_TIMEOUT_S = 120;

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// paths & small utilities

export function resolveDir(opts = {}) {
  return path.resolve(opts.dir || process.env.RPS_DATA_DIR || path.join(REPO, '.data'));
}

function layout(dir) {
  return {
    dir,
    lock: path.join(dir, '.lock'),
    json: path.join(dir, 'services.json'),
    env: path.join(dir, 'services.env'),
    pgLocation: path.join(dir, 'pg.location'),
    redisDir: path.join(dir, 'redis'),
    redisPid: path.join(dir, 'redis', 'redis.pid'),
    redisLog: path.join(dir, 'redis', 'redis.log'),
  };
}

// Where the PostgreSQL cluster lives: DIR/pg, or wherever DIR/pg.location says.
function pgPaths(L) {
  let data = path.join(L.dir, 'pg');
  try {
    const loc = fs.readFileSync(L.pgLocation, 'utf8').trim();
    if (loc) data = loc;
  } catch {}
  return pgPathsFor(L.dir, data);
}

function pgPathsFor(dir, data) {
  const base = path.dirname(data);
  let socket = path.join(base, 'pg-socket');
  // A unix socket path (DIR/pg-socket/.s.PGSQL.65535) must fit in sun_path (108 bytes).
  if (Buffer.byteLength(path.join(socket, '.s.PGSQL.65535')) > 100) {
    socket = path.join(os.tmpdir(), `rpsync-${hashOf(dir)}-sock`);
  }
  return { data, socket, log: path.join(data, 'postgres.log'), relocated: base !== dir ? base : null };
}

function hashOf(s) {
  return crypto.createHash('sha256').update(s).digest('hex').slice(0, 12);
}

function rel(p) {
  const r = path.relative(process.cwd(), p);
  return !r ? '.' : r.startsWith('..') || path.isAbsolute(r) ? p : r;
}

function makeLogger(opts) {
  if (opts.quiet) return () => {};
  if (typeof opts.log === 'function') return opts.log;
  return (msg) => process.stderr.write(`${msg}\n`);
}

function oneLine(s, max = 400) {
  const lines = String(s ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const t = lines.slice(-3).join(' | ');
  return t.length > max ? `…${t.slice(-max)}` : t;
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

function writeAtomic(file, text) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

function readTail(file, fromOffset = 0, maxBytes = 8192) {
  try {
    const size = fs.statSync(file).size;
    const start = Math.max(fromOffset, size - maxBytes);
    if (size <= start) return '';
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function fileSize(file) {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

function shq(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function which(name) {
  const dirs = (process.env.PATH || '').split(path.delimiter).filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!dirs.includes(d)) dirs.push(d);
  }
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {}
  }
  return null;
}

// Run a command to completion, capturing output (never inherits our stdout: it is reserved for the URLs).
function run(cmd, args, { timeoutMs = 120_000, env, cwd = '/' } = {}) {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    let child;
    const finish = (r) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    try {
      child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ code: null, stdout: '', stderr: e.message, error: e });
      return;
    }
    const timer = setTimeout(() => {
      stderr += `\n${path.basename(cmd)} timed out after ${Math.round(timeoutMs / 1000)} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    const keep = (s, d) => (s.length > 1_000_000 ? s.slice(-500_000) : s) + d;
    child.stdout.on('data', (d) => (stdout = keep(stdout, d)));
    child.stderr.on('data', (d) => (stderr = keep(stderr, d)));
    child.on('error', (e) => finish({ code: null, stdout, stderr: `${stderr}\n${e.message}`, error: e }));
    child.on('close', (code, signal) => finish({ code, signal, stdout, stderr }));
  });
}

// Is pid a live (non-zombie) process? Daemonized servers get reparented to PID 1, which in some
// containers never reaps them, so a stopped server can linger as a zombie that kill(pid, 0) accepts.
function isLive(pid) {
  if (!(Number.isInteger(pid) && pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code !== 'EPERM') return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
    if (state === 'Z' || state === 'X') return false;
  } catch {}
  return true;
}

function isZombie(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).charAt(0) === 'Z';
  } catch {
    return false;
  }
}

function cmdlineOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ').trim();
  } catch {
    return null; // no /proc: cannot tell
  }
}

async function waitDead(pid, ms) {
  const deadline = Date.now() + ms;
  while (isLive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

async function killAndWait(pid) {
  for (const [sig, ms] of [['SIGTERM', 5000], ['SIGKILL', 3000]]) {
    try {
      process.kill(pid, sig);
    } catch {}
    if (await waitDead(pid, ms)) return true;
  }
  return !isLive(pid);
}

function readPidFile(file) {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

// A free loopback port: bind 127.0.0.1:0 (or the preferred port, to keep URLs stable across
// restarts) and let it go again.
function freePort(preferred) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (e) => (preferred ? resolve(freePort()) : reject(e)));
    srv.listen({ host: '127.0.0.1', port: preferred || 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// lock: DIR/.lock created with O_EXCL; stale when its holder is dead or it was not touched for 120 s

async function withLock(L, log, fn) {
  const deadline = Date.now() + LOCK_WAIT_MS;
  const token = `${process.pid}\n${os.hostname()}\n${crypto.randomBytes(6).toString('hex')}\n`;
  let announced = false;
  for (;;) {
    try {
      fs.mkdirSync(L.dir, { recursive: true });
      const fd = fs.openSync(L.lock, 'wx');
      try {
        fs.writeSync(fd, token);
      } finally {
        fs.closeSync(fd);
      }
      break;
    } catch (e) {
      if (e.code !== 'EEXIST' && e.code !== 'ENOENT') throw e;
      if (e.code === 'EEXIST' && breakIfStale(L.lock, log)) continue;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${L.lock} (remove it if no services.mjs is running)`);
      if (!announced && e.code === 'EEXIST') {
        announced = true;
        log(`waiting for another services.mjs (lock ${rel(L.lock)})…`);
      }
      await sleep(40 + Math.random() * 80);
    }
  }
  const beat = setInterval(() => {
    try {
      const now = new Date();
      fs.utimesSync(L.lock, now, now);
    } catch {}
  }, LOCK_HEARTBEAT_MS);
  beat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(beat);
    try {
      if (fs.readFileSync(L.lock, 'utf8') === token) fs.unlinkSync(L.lock);
    } catch {}
  }
}

function breakIfStale(lock, log) {
  let st;
  let content;
  try {
    st = fs.statSync(lock);
    content = fs.readFileSync(lock, 'utf8');
  } catch (e) {
    return e.code === 'ENOENT'; // gone already: retry at once
  }
  const [pidS, host] = content.split('\n');
  const pid = Number.parseInt(pidS, 10);
  const holderDead = host === os.hostname() && Number.isInteger(pid) && !isLive(pid);
  const tooOld = Date.now() - st.mtimeMs > LOCK_STALE_MS;
  if (!holderDead && !tooOld) return false;
  // Move it aside atomically; if what we moved is not the file we judged stale (someone broke it and
  // re-locked in between), put it back.
  const aside = `${lock}.stale-${process.pid}-${Date.now()}`;
  try {
    fs.renameSync(lock, aside);
  } catch (e) {
    return e.code === 'ENOENT';
  }
  try {
    if (fs.statSync(aside).ino !== st.ino) {
      try {
        fs.linkSync(aside, lock);
      } catch {}
    } else {
      log(`removed stale lock ${rel(lock)} (${holderDead ? `holder pid ${pid} is gone` : 'older than 120 s'})`);
    }
    return true;
  } finally {
    try {
      fs.unlinkSync(aside);
    } catch {}
  }
}

// ---------------------------------------------------------------------------------------------
// apt

let aptUpdated = false;

async function aptInstall(pkgs, log) {
  if (!which('apt-get')) throw new Error(`apt-get not found; install ${pkgs.join(' ')} with your package manager`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = async () => {
    log('running apt-get update…');
    const r = await run('apt-get', ['update'], { env, timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`apt-get update failed: ${oneLine(r.stderr || r.stdout)}`);
    aptUpdated = true;
  };
  let haveLists = false;
  try {
    haveLists = fs.readdirSync('/var/lib/apt/lists').some((f) => f.includes('_Packages'));
  } catch {}
  if (!haveLists && !aptUpdated) await update();
  const install = () =>
    run('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=300', ...pkgs], { env, timeoutMs: 900_000 });
  let r = await install();
  if (r.code !== 0 && !aptUpdated) {
    await update(); // package lists may be outdated (404s) or missing the package
    r = await install();
  }
  if (r.code !== 0) throw new Error(`apt-get install -y ${pkgs.join(' ')} failed: ${oneLine(r.stderr || r.stdout)}`);
}

// ---------------------------------------------------------------------------------------------
// Redis

// Send one command as a RESP array and read one reply. Resolves to { type, value } ('' type when the
// server closed the connection without replying, as SHUTDOWN does).
function redisCommand(port, args, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      err ? reject(err) : resolve(val);
    };
    const timer = setTimeout(() => finish(new Error(`redis on port ${port}: no reply within ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => {
      let req = `*${args.length}\r\n`;
      for (const a of args) req += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
      sock.write(req);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const type = String.fromCharCode(buf[0]);
      const head = buf.subarray(1, eol).toString();
      if (type === '$') {
        const len = Number.parseInt(head, 10);
        if (len < 0) return finish(null, { type, value: null });
        if (buf.length < eol + 2 + len + 2) return;
        return finish(null, { type, value: buf.subarray(eol + 2, eol + 2 + len).toString() });
      }
      finish(null, { type, value: head });
    });
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(null, { type: '', value: null }));
  });
}

async function redisPing(port) {
  try {
    const r = await redisCommand(port, ['PING']);
    return r.type === '+' && r.value === 'PONG';
  } catch {
    return false;
  }
}

async function redisInfo(port) {
  try {
    const r = await redisCommand(port, ['INFO', 'server']);
    if (r.type !== '$' || !r.value) return null;
    const get = (k) => r.value.match(new RegExp(`^${k}:(.*)$`, 'm'))?.[1]?.trim();
    return { version: get('redis_version'), pid: Number(get('process_id')) };
  } catch {
    return null;
  }
}

async function redisStatus(L, state) {
  const pid = readPidFile(L.redisPid);
  if (!pid || !isLive(pid)) return { running: false };
  const cmd = cmdlineOf(pid);
  if (cmd !== null && !/redis/.test(cmd)) return { running: false }; // pid reused by something else
  // redis sets its process title to "redis-server 127.0.0.1:PORT"; fall back to services.json
  const port = Number(cmd?.match(/127\.0\.0\.1:(\d+)/)?.[1]) || state?.redis?.port;
  const info = port ? await redisInfo(port) : null;
  if (info && info.pid === pid) return { running: true, pid, port, version: info.version };
  return { running: false, orphan: pid, port };
}

async function ensureRedisBinary(log) {
  let bin = which('redis-server');
  if (bin) return bin;
  if (!isRoot()) {
    throw new Error('redis-server not found on PATH and not running as root to install it: sudo apt-get install redis-server');
  }
  log("redis-server not found: installing Debian's redis-server with apt-get…");
  await aptInstall(['redis-server'], log);
  bin = which('redis-server');
  if (!bin) throw new Error('redis-server still not found on PATH after apt-get install redis-server');
  return bin;
}

async function startRedis(L, state, bin, log) {
  const t0 = Date.now();
  fs.mkdirSync(L.redisDir, { recursive: true });
  const cur = await redisStatus(L, state);
  if (cur.running) return { ...cur, reused: true };
  if (cur.orphan) {
    log(`redis pid ${cur.orphan} from ${rel(L.redisPid)} is not answering; killing it`);
    await killAndWait(cur.orphan);
  }
  try {
    fs.unlinkSync(L.redisPid);
  } catch {}

  let why = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(attempt === 0 ? state?.redis?.port : undefined);
    const logOffset = fileSize(L.redisLog);
    // notify-keyspace-events is deliberately left alone: the daemon configures it itself.
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', L.redisDir,
      '--daemonize', 'yes',
      '--pidfile', L.redisPid,
      '--logfile', L.redisLog,
      '--save', '',
      '--appendonly', 'no',
      '--protected-mode', 'no',
    ];
    const r = await run(bin, args, { timeoutMs: 30_000, cwd: L.redisDir });
    if (r.code !== 0) {
      throw new Error(`redis-server exited with ${r.code ?? r.signal}: ${oneLine(r.stderr || r.stdout || readTail(L.redisLog, logOffset))}`);
    }
    const deadline = Date.now() + REDIS_READY_MS;
    let failed = false;
    while (Date.now() < deadline) {
      if (await redisPing(port)) {
        const info = await redisInfo(port);
        let pid = readPidFile(L.redisPid);
        if (!pid && info?.pid) {
          pid = info.pid;
          fs.writeFileSync(L.redisPid, `${pid}\n`);
        }
        log(`started Redis ${info?.version ?? '?'} on 127.0.0.1:${port} (data ${rel(L.redisDir)}) in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
        return { running: true, port, pid, version: info?.version, reused: false };
      }
      const newLog = readTail(L.redisLog, logOffset);
      if (/Could not create server TCP listening socket|Failed listening|Address already in use|FATAL|Fatal error/i.test(newLog)) {
        failed = true;
        why = oneLine(newLog);
        break;
      }
      await sleep(20);
    }
    if (!failed) why = `no PING reply within ${REDIS_READY_MS / 1000} s; ${oneLine(readTail(L.redisLog, logOffset))}`;
    if (!/already in use|listening socket|Failed listening/i.test(why)) break; // only port clashes are worth a retry
    log(`redis could not listen on port ${port} (${why}); trying another port`);
  }
  throw new Error(`Redis did not start: ${why} (log: ${L.redisLog})`);
}

async function stopRedis(L, state, log) {
  const pid = readPidFile(L.redisPid);
  if (!pid || !isLive(pid) || (cmdlineOf(pid) !== null && !/redis/.test(cmdlineOf(pid)))) {
    try {
      fs.unlinkSync(L.redisPid);
    } catch {}
    return false;
  }
  const st = await redisStatus(L, state);
  if (st.running) {
    await redisCommand(st.port, ['SHUTDOWN', 'NOSAVE'], 3000).catch(() => {});
  }
  if (!(await waitDead(pid, 5000))) await killAndWait(pid);
  try {
    fs.unlinkSync(L.redisPid);
  } catch {}
  log(`stopped Redis (pid ${pid}${st.port ? `, port ${st.port}` : ''})`);
  return true;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

// Minimal frontend/backend handshake: StartupMessage as user postgres (trust auth), read until
// ReadyForQuery ('Z' → accepting queries) or ErrorResponse ('E', e.g. "the database system is
// starting up"), then Terminate. No libpq, no spawn: a few milliseconds.
function pgProbe(port, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let version = null;
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (r.ok) sock.end(Buffer.from([0x58, 0, 0, 0, 4]));
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, error: `no reply within ${timeoutMs} ms` }), timeoutMs);
    sock.on('connect', () => {
      const params = Buffer.from('user\0postgres\0database\0postgres\0application_name\0services.mjs\0\0');
      const head = Buffer.alloc(8);
      head.writeInt32BE(8 + params.length, 0);
      head.writeInt32BE(196608, 4); // protocol 3.0
      sock.write(Buffer.concat([head, params]));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5) {
        const type = String.fromCharCode(buf[0]);
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) return;
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        if (type === 'R' && body.readInt32BE(0) !== 0) {
          return finish({ ok: false, error: `server wants authentication (method ${body.readInt32BE(0)})` });
        }
        if (type === 'S') {
          const [k, v] = body.toString().split('\0');
          if (k === 'server_version') version = v;
        }
        if (type === 'E') {
          const msg = body
            .toString()
            .split('\0')
            .find((f) => f.startsWith('M'));
          return finish({ ok: false, error: msg ? msg.slice(1) : 'error response' });
        }
        if (type === 'Z') return finish({ ok: true, version });
      }
    });
    sock.on('error', (e) => finish({ ok: false, error: e.code || e.message }));
    sock.on('close', () => finish({ ok: false, error: 'connection closed' }));
  });
}

function readPostmasterPid(data) {
  try {
    const lines = fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n');
    const pid = Number.parseInt(lines[0], 10);
    const port = Number.parseInt(lines[3], 10);
    return Number.isInteger(pid) && pid > 0 ? { pid, port: Number.isInteger(port) ? port : null } : null;
  } catch {
    return null;
  }
}

function readPgVersion(data) {
  try {
    return fs.readFileSync(path.join(data, 'PG_VERSION'), 'utf8').trim() || null;
  } catch {
    return null;
  }
}

async function pgStatus(pgp) {
  const pm = readPostmasterPid(pgp.data);
  if (!pm || !isLive(pm.pid)) return { running: false };
  if (!pm.port) return { running: false, alive: true, pid: pm.pid };
  const probe = await pgProbe(pm.port);
  if (probe.ok) return { running: true, pid: pm.pid, port: pm.port, version: probe.version };
  return { running: false, alive: true, pid: pm.pid, port: pm.port, error: probe.error };
}

const hasServerBins = (d) =>
  ['initdb', 'pg_ctl', 'postgres'].every((b) => {
    try {
      fs.accessSync(path.join(d, b), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

// Candidate bin dirs, best first: /usr/lib/postgresql/*/bin by descending version (Debian/Ubuntu
// layout), then `pg_config --bindir`, then whatever initdb is on PATH.
async function pgBinCandidates() {
  const out = [];
  try {
    const vers = fs
      .readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    for (const v of vers) {
      const d = `/usr/lib/postgresql/${v}/bin`;
      if (hasServerBins(d)) out.push({ dir: d, major: v });
    }
  } catch {}
  if (out.length) return out;
  const extra = new Set();
  const pgConfig = which('pg_config');
  if (pgConfig) {
    const r = await run(pgConfig, ['--bindir'], { timeoutMs: 10_000 });
    if (r.code === 0 && r.stdout.trim()) extra.add(r.stdout.trim());
  }
  const initdb = which('initdb');
  if (initdb) extra.add(path.dirname(initdb));
  for (const d of extra) {
    if (!hasServerBins(d)) continue;
    const r = await run(path.join(d, 'pg_ctl'), ['--version'], { timeoutMs: 10_000 });
    const m = r.stdout.match(/(\d+)(?:\.(\d+))?/);
    if (m) out.push({ dir: d, major: Number(m[1]) >= 10 ? m[1] : `${m[1]}.${m[2]}` });
  }
  return out;
}

async function ensurePgBinaries(wantMajor, data, log) {
  let cands = await pgBinCandidates();
  if (!cands.length) {
    if (!isRoot()) {
      throw new Error(
        'PostgreSQL binaries not found in /usr/lib/postgresql/*/bin (nor via pg_config or PATH) and not running as root to install them: sudo apt-get install postgresql',
      );
    }
    log("PostgreSQL binaries not found: installing Debian's postgresql with apt-get…");
    await aptInstall(['postgresql'], log);
    cands = await pgBinCandidates();
    if (!cands.length) throw new Error('PostgreSQL binaries still not found in /usr/lib/postgresql/*/bin after apt-get install postgresql');
  }
  if (!wantMajor) return cands[0];
  const match = cands.find((c) => c.major === wantMajor);
  if (!match) {
    throw new Error(
      `${data} holds a PostgreSQL ${wantMajor} cluster but only PostgreSQL ${cands.map((c) => c.major).join(', ')} binaries were found: install postgresql-${wantMajor} or run "node scripts/services.mjs reset" (deletes the data)`,
    );
  }
  return match;
}

function passwdEntry(key) {
  // key: user name or numeric uid
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 7 && (f[0] === String(key) || f[2] === String(key))) return { name: f[0], uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {}
  return null;
}

async function lookupUser(key) {
  const e = passwdEntry(key);
  if (e) return e;
  const r = await run('getent', ['passwd', String(key)], { timeoutMs: 10_000 });
  const f = r.code === 0 ? r.stdout.trim().split(':') : [];
  return f.length >= 7 ? { name: f[0], uid: Number(f[2]), gid: Number(f[3]) } : null;
}

// PostgreSQL refuses to run as root. As root we run initdb/pg_ctl as an unprivileged user: the owner
// of an existing cluster, else the Debian `postgres` user, else a system user `rpsync` we create.
async function pgOsUser(data, log) {
  if (!isRoot()) return null;
  try {
    const st = fs.statSync(data);
    if (st.uid !== 0) {
      const owner = await lookupUser(st.uid);
      if (owner) return owner;
    }
  } catch {}
  let u = await lookupUser('postgres');
  if (u) return u;
  u = await lookupUser('rpsync');
  if (u) return u;
  log('creating system user rpsync to run PostgreSQL (it refuses to run as root)');
  const shell = fs.existsSync('/usr/sbin/nologin') ? '/usr/sbin/nologin' : '/bin/false';
  const r = await run('useradd', ['--system', '--no-create-home', '--shell', shell, 'rpsync'], { timeoutMs: 30_000 });
  u = await lookupUser('rpsync');
  if (!u) throw new Error(`could not create user rpsync to run PostgreSQL as: ${oneLine(r.stderr || r.stdout) || `useradd exited ${r.code}`}`);
  return u;
}

function asUser(user, cmd, args) {
  if (!user) return [cmd, args];
  const runuser = which('runuser');
  if (runuser) return [runuser, ['-u', user.name, '--', cmd, ...args]];
  return [which('su') || 'su', ['-s', '/bin/sh', user.name, '-c', [cmd, ...args].map(shq).join(' ')]];
}

async function canTraverse(user, dir) {
  const [c, a] = asUser(user, 'test', ['-x', dir]);
  const r = await run(c, a, { timeoutMs: 10_000 });
  return r.code === 0;
}

function chownTree(p, user) {
  const st = fs.lstatSync(p);
  if (st.uid !== user.uid || st.gid !== user.gid) fs.lchownSync(p, user.uid, user.gid);
  if (st.isDirectory()) for (const e of fs.readdirSync(p)) chownTree(path.join(p, e), user);
}

function emptyDir(p) {
  for (const e of fs.readdirSync(p)) fs.rmSync(path.join(p, e), { recursive: true, force: true });
}

async function initdb(bin, pgp, user, log) {
  let last = '';
  for (const locale of ['C.UTF-8', 'C']) {
    emptyDir(pgp.data);
    const [c, a] = asUser(user, path.join(bin.dir, 'initdb'), [
      '-D', pgp.data, '-A', 'trust', '-U', 'postgres', '--encoding', 'UTF8', '--locale', locale,
    ]);
    const r = await run(c, a, { timeoutMs: 300_000 });
    if (r.code === 0) return;
    last = oneLine(r.stderr || r.stdout);
    if (locale !== 'C') log(`initdb --locale ${locale} failed (${last}); retrying with --locale C`);
  }
  throw new Error(`initdb failed: ${last}`);
}

async function startPg(L, state, knownBin, log) {
  const t0 = Date.now();
  let pgp = pgPaths(L);
  const cur = await pgStatus(pgp);
  if (cur.running) return { ...cur, dataDir: pgp.data, socketDir: pgp.socket, reused: true };

  // After a crash the pids in postmaster.pid and in the socket lock files may be unreaped zombies
  // (see isLive); postgres itself would take them for a running postmaster ("lock file … already
  // exists"), so drop those. Pids that are really gone are left to postgres, which handles them.
  const zombieLock = (f) => {
    const pid = readPidFile(f);
    if (pid && isZombie(pid)) {
      try {
        fs.unlinkSync(f);
      } catch {}
      return true;
    }
    return false;
  };
  zombieLock(path.join(pgp.data, 'postmaster.pid'));
  try {
    for (const e of fs.readdirSync(pgp.socket)) {
      if (/^\.s\.PGSQL\.\d+\.lock$/.test(e) && zombieLock(path.join(pgp.socket, e))) {
        fs.rmSync(path.join(pgp.socket, e.slice(0, -5)), { force: true });
      }
    }
  } catch {}

  const existing = readPgVersion(pgp.data);
  const bin = knownBin ?? (await ensurePgBinaries(existing, pgp.data, log));
  const user = await pgOsUser(pgp.data, log);
  const pgCtl = (args) => asUser(user, path.join(bin.dir, 'pg_ctl'), args);

  if (cur.alive) {
    // A postmaster is alive but not accepting connections: maybe still starting or recovering.
    log(`PostgreSQL pid ${cur.pid} is not ready (${cur.error ?? 'no port yet'}); waiting…`);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && isLive(cur.pid)) {
      const st = await pgStatus(pgp);
      if (st.running) return { ...st, dataDir: pgp.data, socketDir: pgp.socket, reused: true };
      await sleep(200);
    }
    if (isLive(cur.pid)) {
      log(`PostgreSQL pid ${cur.pid} never became ready; stopping it (-m immediate)`);
      const [c, a] = pgCtl(['-D', pgp.data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
      await run(c, a, { timeoutMs: 90_000 });
      if (isLive(cur.pid)) await killAndWait(cur.pid);
    }
  }

  if (!existing) {
    if (user && !fs.existsSync(L.pgLocation) && !(await canTraverse(user, L.dir))) {
      // The unprivileged user cannot reach DIR (typically a repo under /root, mode 0700). Rather than
      // chmod o+x the parents (which silently widens access to e.g. /root on a developer machine,
      // and may be undone or impossible on some mounts), keep the cluster in a directory that is
      // reachable by construction and record it in DIR/pg.location. /var/tmp rather than /tmp:
      // /tmp is a tmpfs on many systems (Debian 13+), where fsync is a no-op, which would distort
      // benchmarks that run with fsync=on; /var/tmp is disk-backed and survives reboots.
      const base = path.join(fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir(), `rpsync-${hashOf(L.dir)}`);
      fs.mkdirSync(base, { recursive: true });
      fs.chmodSync(base, 0o755);
      pgp = pgPathsFor(L.dir, path.join(base, 'pg'));
      fs.writeFileSync(L.pgLocation, `${pgp.data}\n`);
      log(`${user.name} cannot traverse ${L.dir}; keeping the PostgreSQL cluster in ${pgp.data} (recorded in ${rel(L.pgLocation)})`);
    }
    fs.mkdirSync(pgp.data, { recursive: true, mode: 0o700 });
    fs.chmodSync(pgp.data, 0o700);
    if (user) fs.chownSync(pgp.data, user.uid, user.gid);
    log(`initializing a PostgreSQL ${bin.major} cluster in ${rel(pgp.data)}${user ? ` as OS user ${user.name}` : ''}…`);
    await initdb(bin, pgp, user, log);
  } else if (user) {
    chownTree(pgp.data, user); // e.g. a cluster copied in by root
  }
  fs.mkdirSync(pgp.socket, { recursive: true });
  if (user) fs.chownSync(pgp.socket, user.uid, user.gid);

  let why = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(attempt === 0 ? state?.postgres?.port : undefined);
    const logOffset = fileSize(pgp.log);
    // fsync stays on: benchmarks compare against references measured with fsync on.
    const o = `-p ${port} -c listen_addresses=127.0.0.1 -k ${shq(pgp.socket)} -c fsync=on -c max_connections=200 -c shared_buffers=256MB`;
    const [c, a] = pgCtl(['-D', pgp.data, '-l', pgp.log, '-w', '-t', String(PG_START_TIMEOUT_S), '-o', o, 'start']);
    const r = await run(c, a, { timeoutMs: (PG_START_TIMEOUT_S + 30) * 1000 });
    if (r.code === 0) {
      let probe;
      for (let i = 0; i < 50; i++) {
        probe = await pgProbe(port);
        if (probe.ok) break;
        await sleep(100);
      }
      if (probe.ok) {
        const pm = readPostmasterPid(pgp.data);
        log(
          `started PostgreSQL ${probe.version?.split(' ')[0] ?? bin.major} on 127.0.0.1:${port} (data ${rel(pgp.data)}) in ${((Date.now() - t0) / 1000).toFixed(2)} s`,
        );
        return { running: true, port, pid: pm?.pid, version: probe.version, dataDir: pgp.data, socketDir: pgp.socket, binDir: bin.dir, osUser: user?.name ?? os.userInfo().username, reused: false };
      }
      why = `started but does not accept connections on port ${port}: ${probe.error}`;
      break;
    }
    const newLog = readTail(pgp.log, logOffset);
    why = oneLine(newLog || r.stderr || r.stdout) || `pg_ctl exited ${r.code}`;
    if (!/could not bind|already in use|could not create any TCP\/IP sockets/i.test(newLog)) break;
    log(`PostgreSQL could not listen on port ${port}; trying another port`);
  }
  throw new Error(`PostgreSQL did not start: ${why} (log: ${pgp.log})`);
}

async function stopPg(L, state, log) {
  const pgp = pgPaths(L);
  const pm = readPostmasterPid(pgp.data);
  if (!pm || !isLive(pm.pid)) return false;
  let ok = false;
  const binDir = state?.postgres?.binDir && hasServerBins(state.postgres.binDir) ? state.postgres.binDir : (await pgBinCandidates())[0]?.dir;
  if (binDir) {
    let user = null;
    if (isRoot()) {
      const st = fs.statSync(pgp.data);
      user = st.uid !== 0 ? await lookupUser(st.uid) : null;
    }
    const [c, a] = asUser(user, path.join(binDir, 'pg_ctl'), ['-D', pgp.data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    const r = await run(c, a, { timeoutMs: 90_000 });
    ok = r.code === 0 || !isLive(pm.pid);
    if (!ok) log(`pg_ctl stop failed (${oneLine(r.stderr || r.stdout)}); signalling pid ${pm.pid}`);
  }
  if (!ok) {
    // SIGINT = fast shutdown, SIGQUIT = immediate
    try {
      process.kill(pm.pid, 'SIGINT');
    } catch {}
    if (!(await waitDead(pm.pid, 60_000))) {
      try {
        process.kill(pm.pid, 'SIGQUIT');
      } catch {}
      if (!(await waitDead(pm.pid, 10_000))) throw new Error(`could not stop PostgreSQL pid ${pm.pid} (data ${pgp.data})`);
    }
  }
  log(`stopped PostgreSQL (pid ${pm.pid}${pm.port ? `, port ${pm.port}` : ''})`);
  return true;
}

// ---------------------------------------------------------------------------------------------
// public API

const urls = (redisPort, pgPort) => ({
  redisUrl: `redis://127.0.0.1:${redisPort}/0`,
  databaseUrl: `postgres://postgres@127.0.0.1:${pgPort}/postgres`,
});
const envText = (u) => `REDIS_URL=${u.redisUrl}\nDATABASE_URL=${u.databaseUrl}\n`;

export async function status(opts = {}) {
  const L = layout(resolveDir(opts));
  const state = readJson(L.json);
  const pgp = pgPaths(L);
  const [redis, postgres] = await Promise.all([redisStatus(L, state), pgStatus(pgp)]);
  const running = redis.running && postgres.running;
  const u = running ? urls(redis.port, postgres.port) : { redisUrl: null, databaseUrl: null };
  return {
    dir: L.dir,
    running,
    ...u,
    redis: { running: redis.running, pid: redis.pid ?? redis.orphan ?? null, port: redis.port ?? null, version: redis.version ?? null },
    postgres: {
      running: postgres.running,
      pid: postgres.pid ?? null,
      port: postgres.port ?? null,
      version: postgres.version ?? null,
      dataDir: pgp.data,
      ...(postgres.error ? { error: postgres.error } : {}),
    },
  };
}

export async function start(opts = {}) {
  const log = makeLogger(opts);
  const L = layout(resolveDir(opts));

  // Fast path, without the lock: both servers already answer.
  const st = await status(opts);
  if (st.running) {
    if (readTail(L.env) !== envText(st)) writeAtomic(L.env, envText(st));
    log(`reusing Redis ${st.redis.version} on 127.0.0.1:${st.redis.port} and PostgreSQL ${st.postgres.version?.split(' ')[0]} on 127.0.0.1:${st.postgres.port} (${rel(L.dir)})`);
    return { redisUrl: st.redisUrl, databaseUrl: st.databaseUrl, reused: true };
  }

  return withLock(L, log, async () => {
    const state = readJson(L.json) ?? {};
    // Locate (or apt-get install) every missing binary first, one after the other, so that a
    // missing PostgreSQL fails before anything was started; then start both servers concurrently.
    const pgp = pgPaths(L);
    const [redisCur, pgCur] = await Promise.all([redisStatus(L, state), pgStatus(pgp)]);
    const redisBin = redisCur.running ? null : await ensureRedisBinary(log);
    const pgBin = pgCur.running ? null : await ensurePgBinaries(readPgVersion(pgp.data), pgp.data, log);
    const [redis, pg] = await Promise.all([
      redisBin ? startRedis(L, state, redisBin, log) : { ...redisCur, reused: true },
      startPg(L, state, pgBin, log),
    ]);
    const u = urls(redis.port, pg.port);
    const next = {
      redis: { port: redis.port, pid: redis.pid ?? null, version: redis.version ?? state.redis?.version ?? null, dir: L.redisDir, log: L.redisLog },
      postgres: {
        port: pg.port,
        pid: pg.pid ?? null,
        version: pg.version ?? null,
        dataDir: pg.dataDir,
        socketDir: pg.socketDir,
        log: path.join(pg.dataDir, 'postgres.log'),
        binDir: pg.binDir ?? state.postgres?.binDir ?? null,
        osUser: pg.osUser ?? state.postgres?.osUser ?? null,
      },
      ...u,
      updatedAt: new Date().toISOString(),
    };
    writeAtomic(L.json, `${JSON.stringify(next, null, 2)}\n`);
    writeAtomic(L.env, envText(u));
    if (redis.reused) log(`reusing Redis on 127.0.0.1:${redis.port}`);
    if (pg.reused) log(`reusing PostgreSQL on 127.0.0.1:${pg.port}`);
    return { ...u, reused: Boolean(redis.reused && pg.reused) };
  });
}

export async function stop(opts = {}) {
  const log = makeLogger(opts);
  const L = layout(resolveDir(opts));
  if (!fs.existsSync(L.dir)) return { redisStopped: false, postgresStopped: false };
  return withLock(L, log, () => stopLocked(L, log));
}

async function stopLocked(L, log) {
  const state = readJson(L.json);
  const [redisStopped, postgresStopped] = await Promise.all([stopRedis(L, state, log), stopPg(L, state, log)]);
  try {
    fs.unlinkSync(L.env); // services.json stays: the next start tries to reuse the same ports
  } catch {}
  return { redisStopped, postgresStopped };
}

// Entries of DIR that belong to us; reset deletes these and then DIR itself if nothing else is left
// (so a mistaken `--dir /tmp` cannot wipe unrelated files).
const OURS = (name) => ['redis', 'pg', 'pg-socket', 'pg.location'].includes(name) || name.startsWith('.lock') || name.startsWith('services.');

export async function reset(opts = {}) {
  const log = makeLogger(opts);
  const L = layout(resolveDir(opts));
  if (!fs.existsSync(L.dir)) return { removed: false };
  return withLock(L, log, async () => {
    await stopLocked(L, log);
    const pgp = pgPaths(L);
    for (const p of [pgp.relocated, path.basename(pgp.socket).startsWith('rpsync-') ? pgp.socket : null]) {
      if (p && /^rpsync-[0-9a-f]{12}(-sock)?$/.test(path.basename(p))) fs.rmSync(p, { recursive: true, force: true });
    }
    const others = [];
    for (const e of fs.readdirSync(L.dir)) {
      if (e === '.lock') continue; // removed when the lock is released
      if (OURS(e)) fs.rmSync(path.join(L.dir, e), { recursive: true, force: true });
      else others.push(e);
    }
    if (others.length) {
      log(`removed the services' data from ${L.dir}; left the directory (it also holds: ${others.slice(0, 5).join(', ')})`);
    } else {
      fs.rmSync(L.dir, { recursive: true, force: true });
      log(`removed ${rel(L.dir)}`);
    }
    return { removed: true };
  });
}

// ---------------------------------------------------------------------------------------------
// CLI

const USAGE = `usage: node scripts/services.mjs <start|stop|env|status|reset> [--dir DIR]
  DIR defaults to $RPS_DATA_DIR, else ${path.join(REPO, '.data')}`;

async function main(argv) {
  let cmd = null;
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dir') {
      if (!argv[i + 1]) throw new Error('--dir needs a value');
      opts.dir = argv[++i];
    } else if (a.startsWith('--dir=')) opts.dir = a.slice(6);
    else if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    } else if (!cmd && !a.startsWith('-')) cmd = a;
    else {
      process.stderr.write(`services: unexpected argument ${a}\n${USAGE}\n`);
      return 2;
    }
  }
  switch (cmd) {
    case 'start': {
      const u = await start(opts);
      process.stdout.write(envText(u));
      return 0;
    }
    case 'stop':
      await stop(opts);
      return 0;
    case 'reset':
      await reset(opts);
      return 0;
    case 'env': {
      const st = await status(opts);
      if (!st.running) {
        process.stderr.write(`services: not running in ${st.dir} (start them with: node scripts/services.mjs start)\n`);
        return 1;
      }
      process.stdout.write(envText(st));
      return 0;
    }
    case 'status': {
      const st = await status(opts);
      process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
      return st.running ? 0 : 1;
    }
    default:
      process.stderr.write(`${cmd ? `services: unknown command ${cmd}\n` : ''}${USAGE}\n`);
      return 2;
  }
}

const isEntry = (() => {
  try {
    return Boolean(process.argv[1]) && fs.realpathSync(process.argv[1]) === fs.realpathSync(SCRIPT);
  } catch {
    return false;
  }
})();

if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`services: ${String(err?.message ?? err).split('\n').join(' ')}\n`);
      process.exitCode = 1;
    },
  );
}
