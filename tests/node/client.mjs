// A fedgate client in Node.js, written from the .proto files alone (@grpc/grpc-js + @grpc/proto-loader, and
// protobufjs to decode the google.rpc.Status of an error). It is the worked example of docs/api.md, and
// tests/integration/test_node_client.py runs it against a real gateway.
//
// Owns: what a vendor's Node program does with the contract: submit (idempotently), list a page at a time,
// watch a job to its end, cancel, decode an error's details, and call the public port with a bearer token.
// Each step prints one JSON line ({"step": ..., ...}) for the test to check; it decides nothing itself.
//
// Usage (paths and addresses come from the caller, nothing is read from fixed places):
//   node client.mjs --proto-path PROTO_DIR [--proto-path DIR ...] --address HOST:PORT --ca CA.pem
//     --cert CERT.pem --key KEY.pem --tenant T --project P --class ACCELERATOR_CLASS
//     [--public-address HOST:PORT] (the bearer token comes from the FEDGATE_TOKEN environment variable)
// The proto path must reach fedgate/v1/*.proto, google/api/field_behavior.proto (both in the repository's
// proto/) and google/rpc/{status,error_details}.proto (googleapis: any copy of them, e.g. the folder that the
// googleapis-common-protos wheel installs); google/protobuf/*.proto come bundled with protobufjs.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const CALL_DEADLINE_MS = 10_000;
const WATCH_DEADLINE_MS = 30_000;
const TERMINAL = new Set(['JOB_STATE_SUCCEEDED', 'JOB_STATE_FAILED', 'JOB_STATE_CANCELLED', 'JOB_STATE_REJECTED']);

const { values: args } = parseArgs({
  options: {
    'proto-path': { type: 'string', multiple: true },
    address: { type: 'string' },
    'public-address': { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    tenant: { type: 'string' },
    project: { type: 'string' },
    class: { type: 'string' },
  },
});

function emit(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + '\n');
}

// ---- the contract, loaded from .proto files ---------------------------------------------------------------------
// keepCase: fields keep their proto names (job_id, next_page_token); enums as their names; 64-bit integers as
// strings (JobEvent.sequence is a uint64).
const LOADER_OPTIONS = { keepCase: true, enums: String, longs: String, defaults: true, oneofs: true };

function loadContract(protoPaths) {
  const definition = protoLoader.loadSync(['fedgate/v1/job_service.proto'], {
    ...LOADER_OPTIONS,
    includeDirs: protoPaths,
  });
  const fedgate = grpc.loadPackageDefinition(definition).fedgate.v1;
  // google.rpc.Status and the detail types it may carry, for decoding errors.
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolveIn(protoPaths, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
  return { JobService: fedgate.JobService, root };
}

function resolveIn(protoPaths, target) {
  for (const dir of protoPaths) {
    const candidate = `${dir}/${target}`;
    try {
      readFileSync(candidate);
      return candidate;
    } catch {
      // not in this folder: try the next one
    }
  }
  return target; // google/protobuf/*.proto: protobufjs has them bundled
}

// ---- errors: google.rpc.Status in the grpc-status-details-bin trailer -------------------------------------------
// Every refusal carries a google.rpc.Status whose details are Any messages: an ErrorInfo (reason, domain
// "fedgate.io", metadata) always, and e.g. a BadRequest or a RetryInfo when they apply.
function decodeError(root, error) {
  const [raw] = error.metadata?.get('grpc-status-details-bin') ?? [];
  const out = { code: grpc.status[error.code], message: error.details, details: [] };
  if (!raw) return out;
  const Status = root.lookupType('google.rpc.Status');
  const status = Status.decode(raw);
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = root.lookupType(typeName);
    out.details.push({ type: typeName, ...type.toObject(type.decode(any.value), { defaults: true }) });
  }
  return out;
}

// ---- calls ------------------------------------------------------------------------------------------------------
function deadline(ms = CALL_DEADLINE_MS) {
  return { deadline: Date.now() + ms };
}

function unary(client, method, request, metadata = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, deadline(), (error, response) => (error ? reject(error) : resolve(response)));
  });
}

// A refused call's decoded error; a call that succeeds where it should not is an error of this script.
async function refused(root, call) {
  try {
    await call();
  } catch (error) {
    return decodeError(root, error);
  }
  throw new Error('the call was expected to be refused, but it succeeded');
}

async function listAll(client, request, metadata) {
  const pages = [];
  let page_token = '';
  do {
    const page = await unary(client, 'ListJobs', { ...request, page_token }, metadata);
    pages.push(page.jobs.map((job) => job.job_id));
    page_token = page.next_page_token;
  } while (page_token);
  return pages;
}

// Follow a job to its end; `onEvent` may act on each event (cancel the job once it runs, say).
// With `after_sequence`, resume after the last event a client kept: only the events recorded after it come.
function watch(client, job_id, onEvent, after_sequence = undefined) {
  return new Promise((resolve, reject) => {
    const events = [];
    const request = after_sequence === undefined ? { job_id } : { job_id, after_sequence };
    const stream = client.WatchJob(request, deadline(WATCH_DEADLINE_MS));
    stream.on('data', ({ event, job }) => {
      events.push({ state: event.state, sequence: event.sequence, job_state: job.state });
      onEvent(event);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(events));
  });
}

// ---- the run ----------------------------------------------------------------------------------------------------
async function main() {
  const { JobService, root } = loadContract(args['proto-path']);
  const ca = readFileSync(args.ca);
  const mtls = grpc.credentials.createSsl(ca, readFileSync(args.key), readFileSync(args.cert));
  const jobs = new JobService(args.address, mtls);
  const spec = (name) => ({
    tenant: args.tenant,
    project: args.project,
    name,
    resources: { accelerator_class: args.class, cards: 1 },
    runs: [{ stack: '', command: ['python3', '-c', 'import time; time.sleep(300)'] }],
    max_runtime: { seconds: 600 },
  });

  // Submit three jobs; a retry with the same request_id returns the job the first call created.
  const created = [];
  for (const name of ['node-a', 'node-b', 'node-c']) {
    const { job } = await unary(jobs, 'CreateJob', { request_id: `${name}-1`, spec: spec(name) });
    created.push(job);
  }
  const again = await unary(jobs, 'CreateJob', { request_id: 'node-a-1', spec: spec('node-a') });
  emit('create', {
    job_ids: created.map((job) => job.job_id),
    states: created.map((job) => job.state),
    retried_job_id: again.job.job_id,
  });

  // List a page at a time (two per page), following next_page_token until it is empty.
  const pages = await listAll(jobs, { tenant: args.tenant, project: args.project, page_size: 2 });
  emit('list', { pages });

  // Watch the first job; cancel it once it runs; the stream ends at the terminal state.
  const [first] = created;
  let cancelled = null;
  const events = await watch(jobs, first.job_id, (event) => {
    if (event.state === 'JOB_STATE_RUNNING' && cancelled === null) {
      cancelled = unary(jobs, 'CancelJob', { job_id: first.job_id, reason: 'done watching' });
    }
  });
  const cancel = cancelled ? (await cancelled).job : null;
  // A client that kept the first event's sequence resumes after it and gets the rest, none twice.
  const resumed = await watch(jobs, first.job_id, () => {}, events[0].sequence);
  emit('watch', { job_id: first.job_id, events, resumed, cancel_state: cancel?.state ?? null });
  for (const job of created.slice(1)) {
    await unary(jobs, 'CancelJob', { job_id: job.job_id, reason: 'clean up' });
  }
  const states = await Promise.all(created.map((job) => unary(jobs, 'GetJob', { job_id: job.job_id })));
  emit('cancel', {
    states: states.map(({ job }) => job.state),
    terminal: states.every(({ job }) => TERMINAL.has(job.state)),
  });

  // Errors decode as google.rpc.Status with an ErrorInfo.
  emit('error', {
    call: 'GetJob unknown',
    ...(await refused(root, () => unary(jobs, 'GetJob', { job_id: 'job-00000000000000000000' }))),
  });
  emit('error', {
    call: 'ListJobs bad page token',
    ...(await refused(root, () => unary(jobs, 'ListJobs', { page_token: 'not-a-token' }))),
  });
  const tooLong = { ...spec('node-bad'), max_runtime: { seconds: 31 * 86_400 } }; // the limit is 30 days
  emit('error', {
    call: 'CreateJob max_runtime over the limit',
    ...(await refused(root, () => unary(jobs, 'CreateJob', { spec: tooLong }))),
  });
  jobs.close();

  // The public port: TLS that verifies the gateway, no client certificate; a bearer token names the caller.
  if (args['public-address'] && process.env.FEDGATE_TOKEN) {
    const publicJobs = new JobService(args['public-address'], grpc.credentials.createSsl(ca));
    const bearer = new grpc.Metadata();
    bearer.set('authorization', `Bearer ${process.env.FEDGATE_TOKEN}`);
    const tokenPages = await listAll(publicJobs, { tenant: args.tenant, project: args.project, page_size: 2 }, bearer);
    const anonymous = await refused(root, () => unary(publicJobs, 'ListJobs', {}));
    emit('public', { pages: tokenPages, anonymous });
    publicJobs.close();
  }
  emit('done', {});
}

main().catch((error) => {
  emit('failed', { message: String(error?.stack ?? error), code: error?.code ?? null });
  process.exitCode = 1;
});
